-- reprice leaves the aggregates exact: the buckets its changes touch are rebuilt in the same
-- transaction, with the machinery of void_events and recompute_rollups
-- (tally._rebuild_rollups).
--
-- Before, reprice changed cost_usd / potential_cost_usd of events the rollups had already
-- folded and reported success, and usage_hourly / daily / monthly (and so the *_live views
-- and verify_rollups) stayed wrong until someone ran recompute_rollups.
--
-- Now it takes the rollups' lock first (so the watermark cannot move while it works, and a
-- running rollup that read the old costs has committed before the update), updates the
-- costs, and rebuilds exactly the (grain, account, bucket) of every changed event the
-- rollups had folded (id <= watermark, not voided). Changed events past the watermark are
-- folded with their new cost by the next run; the live views read them raw meanwhile.
-- Hourly and daily buckets past their own retention are not recreated, as in recompute.
-- A bucket that may have lost raw events to retention is refused by the rebuild
-- (past_retention), and the whole reprice with it.

CREATE OR REPLACE FUNCTION tally.reprice(p_from timestamptz, p_to timestamptz) RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET jit = off
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_updated   bigint;
  v_watermark bigint;
  v_grains    text[];
  v_accounts  uuid[];
  v_buckets   text[];
  v_rebuilt   jsonb := '{"hourly": 0, "daily": 0, "monthly": 0}';
BEGIN
  IF NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', '42501', 'reprice: service callers only');
  END IF;
  IF p_from IS NULL OR p_to IS NULL OR p_from >= p_to THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('from, to: need from < to (got %s, %s)', p_from, p_to));
  END IF;
  PERFORM tally._require_read_committed('reprice');
  -- Wait for a running rollup, and keep new ones out until this transaction ends: the
  -- watermark must not move between the update and the rebuild.
  PERFORM pg_advisory_xact_lock(hashtext('tally.run_rollups'));
  v_watermark := (SELECT s.watermark FROM tally.rollup_state s);

  WITH priced AS (
    -- events in the range whose cost Tally computed (or could not compute), with the price
    -- in effect at their occurred_at
    SELECT e.account_id, e.occurred_at, e.id, e.cached, e.cost_given, e.potential_cost_given,
           e.cost_usd, e.potential_cost_usd,
           tally._token_cost(e.tokens_in, e.tokens_out, p.input_usd_per_mtok, p.output_usd_per_mtok) AS price
    FROM tally.events e
    CROSS JOIN LATERAL (
      SELECT mp.input_usd_per_mtok, mp.output_usd_per_mtok FROM tally.model_prices mp
      WHERE mp.provider = e.provider AND mp.model = e.model AND mp.effective_from <= e.occurred_at
      ORDER BY mp.effective_from DESC LIMIT 1
    ) p
    WHERE e.occurred_at >= p_from AND e.occurred_at < p_to
      AND (e.tokens_in IS NOT NULL OR e.tokens_out IS NOT NULL)
      AND NOT (e.cost_given AND e.potential_cost_given)
  ),
  new_cost AS (
    -- the rules of ingestion: a cached call costs 0 unless given, otherwise the price; a
    -- price that does not fit cost_usd (10^12 USD or more) leaves the event as it is
    SELECT pr.*, CASE WHEN pr.cost_given THEN pr.cost_usd WHEN pr.cached THEN 0 ELSE pr.price END AS cost
    FROM priced pr
    WHERE pr.price < 1e12
  ),
  recomputed AS (
    -- potential: what a cached call would have cost (the price); an uncached call's cost
    SELECT nc.account_id, nc.occurred_at, nc.id, nc.cost,
           CASE WHEN nc.potential_cost_given THEN nc.potential_cost_usd WHEN nc.cached THEN nc.price ELSE nc.cost END AS potential
    FROM new_cost nc
  ),
  changed AS (
    UPDATE tally.events e
    SET cost_usd = r.cost, potential_cost_usd = r.potential
    FROM recomputed r
    WHERE e.account_id = r.account_id AND e.occurred_at = r.occurred_at AND e.id = r.id
      AND (e.cost_usd IS DISTINCT FROM r.cost OR e.potential_cost_usd IS DISTINCT FROM r.potential)
    RETURNING e.account_id, e.occurred_at, e.id
  ),
  bucket_keys AS (
    -- the buckets the changed events are counted in: only events the rollups folded and
    -- that are not void; hourly and daily buckets past their retention stay deleted
    SELECT DISTINCT g.grain, c.account_id,
           CASE g.grain WHEN 'hourly' THEN date_trunc('hour', c.occurred_at, 'UTC')::text
                        WHEN 'daily' THEN (c.occurred_at AT TIME ZONE a.timezone)::date::text
                        ELSE date_trunc('month', c.occurred_at AT TIME ZONE a.timezone)::date::text END AS bucket
    FROM changed c
    JOIN tally.accounts a ON a.id = c.account_id
    CROSS JOIN (VALUES ('hourly'), ('daily'), ('monthly')) AS g(grain)
    WHERE c.id <= v_watermark
      AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = c.account_id AND v.event_id = c.id)
  ),
  kept_keys AS (
    SELECT k.grain, k.account_id, k.bucket FROM bucket_keys k
    WHERE (k.grain <> 'hourly' OR k.bucket::timestamptz >= tally._retention_floor('hourly'))
      AND (k.grain <> 'daily' OR k.bucket::date >= tally._retention_floor('daily')::date)
  )
  SELECT (SELECT count(*) FROM changed), ka.grains, ka.accounts, ka.buckets
  INTO v_updated, v_grains, v_accounts, v_buckets
  FROM (SELECT array_agg(k.grain) AS grains, array_agg(k.account_id) AS accounts, array_agg(k.bucket) AS buckets FROM kept_keys k) ka;

  IF v_grains IS NOT NULL THEN
    v_rebuilt := tally._rebuild_rollups(v_grains, v_accounts, v_buckets);
  END IF;
  RETURN jsonb_build_object('repriced', v_updated, 'from', p_from, 'to', p_to, 'rebuilt_buckets', v_rebuilt);
END
$$;
COMMENT ON FUNCTION tally.reprice(timestamptz, timestamptz) IS
  'Recomputes cost_usd and potential_cost_usd of the LLM events with occurred_at in [p_from, p_to) from tally.model_prices, for the values Tally computed (never a cost the caller gave), and in the same transaction rebuilds exactly the hourly, daily and monthly buckets the changed events were counted in, so the aggregates and live views stay exact (a run_rollups meanwhile returns skipped and the next one goes on). Refuses (past_retention, nothing changed) when a bucket to rebuild starts before the retention cutoff of raw events, since it can no longer be rebuilt whole. Returns {repriced: n events changed, from, to, rebuilt_buckets: {hourly, daily, monthly}}. Needs READ COMMITTED. Service callers only.';
REVOKE ALL ON FUNCTION tally.reprice(timestamptz, timestamptz) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.reprice(timestamptz, timestamptz) TO service_role;
