-- Unpriced LLM usage stays visible: "unpriced" differs from "free".
--
-- An event is unpriced when it carries tokens (tokens_in or tokens_out not null) and a
-- cost Tally had to compute is missing: cost_usd or potential_cost_usd is NULL. Ingestion
-- (and tally.reprice) compute those from the tally.model_prices row with the event's exact
-- provider and model in effect at occurred_at; with no such row the computed value stays
-- NULL. A cost the caller gives is never NULL, so an event is unpriced exactly when a
-- price was needed and none matched:
--   * not cached, no cost_usd given: cost_usd and potential_cost_usd both NULL;
--   * cached, no potential_cost_usd given: cost_usd is 0 (cached calls are free) but
--     potential_cost_usd, what it would have cost, is NULL.
-- An explicit cost_usd of 0 is free, not unpriced. An event without tokens has nothing to
-- price and is never unpriced.
--
-- The count is a new sum metric, `unpriced`, of usage_hourly/daily/monthly and the three
-- *_live views: folded by the same generated statement as every other metric (so exactly
-- once, with the watermark), checked by tally.verify_rollups, rebuilt by
-- tally.recompute_rollups and tally.void_events. Existing rows are backfilled from the raw
-- events. tally.unpriced_models() lists the unpriced models of a recent window for
-- `tally status`.

CREATE OR REPLACE FUNCTION tally._rollup_metrics()
  RETURNS TABLE (ord integer, name text, sql_type text, combine text, event_value text, group_value text, columns text[])
  LANGUAGE sql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
    select * from (values
      (1, 'requests', 'bigint', 'sum', '1', 'count(*)', '{}'::text[]),
      (2, 'successful', 'bigint', 'sum', 'CASE WHEN e.success THEN 1 ELSE 0 END', 'count(*) FILTER (WHERE e.success)', '{success}'),
      (3, 'failed', 'bigint', 'sum', 'CASE WHEN e.success THEN 0 ELSE 1 END', 'count(*) FILTER (WHERE NOT e.success)', '{success}'),
      (4, 'cached', 'bigint', 'sum', 'CASE WHEN e.cached THEN 1 ELSE 0 END', 'count(*) FILTER (WHERE e.cached)', '{cached}'),
      (5, 'files', 'numeric', 'sum', 'coalesce(e.files, 0)', 'coalesce(sum(e.files), 0)', '{files}'),
      (6, 'bytes', 'numeric', 'sum', 'coalesce(e.bytes, 0)', 'coalesce(sum(e.bytes), 0)', '{bytes}'),
      (7, 'tokens_in', 'numeric', 'sum', 'coalesce(e.tokens_in, 0)', 'coalesce(sum(e.tokens_in), 0)', '{tokens_in}'),
      (8, 'tokens_out', 'numeric', 'sum', 'coalesce(e.tokens_out, 0)', 'coalesce(sum(e.tokens_out), 0)', '{tokens_out}'),
      (9, 'cost_usd', 'numeric', 'sum', 'coalesce(e.cost_usd, 0)', 'coalesce(sum(e.cost_usd), 0)', '{cost_usd}'),
      (10, 'potential_cost_usd', 'numeric', 'sum', 'coalesce(e.potential_cost_usd, 0)', 'coalesce(sum(e.potential_cost_usd), 0)', '{potential_cost_usd}'),
      (11, 'quantity', 'numeric', 'sum', 'e.quantity', 'sum(e.quantity)', '{quantity}'),
      (12, 'latency_count', 'bigint', 'sum', 'CASE WHEN e.latency_ms IS NULL THEN 0 ELSE 1 END', 'count(e.latency_ms)', '{latency_ms}'),
      (13, 'latency_sum', 'numeric', 'sum', 'coalesce(e.latency_ms, 0)', 'coalesce(sum(e.latency_ms), 0)', '{latency_ms}'),
      (14, 'latency_max', 'integer', 'max', 'e.latency_ms', 'max(e.latency_ms)', '{latency_ms}'),
      (15, 'latency_hist', 'bigint[]', 'histogram', 'e.latency_ms', NULL, '{latency_ms}'),
      -- tokens, and a cost Tally had to compute but found no price for (see above)
      (16, 'unpriced', 'bigint', 'sum',
       'CASE WHEN (e.tokens_in IS NOT NULL OR e.tokens_out IS NOT NULL) AND (e.cost_usd IS NULL OR e.potential_cost_usd IS NULL) THEN 1 ELSE 0 END',
       'count(*) FILTER (WHERE (e.tokens_in IS NOT NULL OR e.tokens_out IS NOT NULL) AND (e.cost_usd IS NULL OR e.potential_cost_usd IS NULL))',
       '{tokens_in,tokens_out,cost_usd,potential_cost_usd}')
    ) as m(ord, name, sql_type, combine, event_value, group_value, columns)
  $$;

-- the column on the three tables, the live views regenerated with it, existing rows filled
SELECT tally._apply_rollup_metrics();
SELECT tally._backfill_rollup_metric('unpriced');

COMMENT ON COLUMN tally.usage_hourly.unpriced IS
  'Events with tokens whose cost (or, for a cached call, potential cost) Tally had to compute but found no tally.model_prices row for: their cost_usd counts as 0 here, but it is unknown, not free.';
COMMENT ON COLUMN tally.usage_daily.unpriced IS
  'Events with tokens whose cost (or, for a cached call, potential cost) Tally had to compute but found no tally.model_prices row for (see tally.usage_hourly.unpriced).';
COMMENT ON COLUMN tally.usage_monthly.unpriced IS
  'Events with tokens whose cost (or, for a cached call, potential cost) Tally had to compute but found no tally.model_prices row for (see tally.usage_hourly.unpriced).';

-- The hours that hold unpriced events, for tally.unpriced_models: a recent window of them
-- is found without reading the rest of the table. Only rows with unpriced events are in it.
CREATE INDEX usage_hourly_unpriced ON tally.usage_hourly (bucket) WHERE unpriced > 0;

CREATE FUNCTION tally.unpriced_models(p_window interval DEFAULT '7 days')
  RETURNS TABLE (provider text, model text, events bigint, accounts bigint, last_seen_hour timestamptz)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_since timestamptz;
BEGIN
  IF p_window IS NULL OR p_window <= interval '0' OR p_window > interval '90 days' THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('window: must be more than 0 and at most 90 days (got %s)', p_window));
  END IF;
  v_since := date_trunc('hour', now() - p_window);
  -- The folded hours through the partial index, plus the unfolded tail (tally.events_tail,
  -- the one definition of it the live views use too). One statement, one snapshot: no event
  -- is in both. The unpriced condition is the metric list's own.
  RETURN QUERY EXECUTE format($q$
    SELECT x.provider, x.model, sum(x.n)::bigint, count(DISTINCT x.account_id), max(x.hour)
    FROM (
      SELECT u.provider, u.model, u.account_id, u.unpriced AS n, u.bucket AS hour
      FROM tally.usage_hourly u
      WHERE u.unpriced > 0 AND u.bucket >= $1
      UNION ALL
      SELECT e.provider, e.model, e.account_id, 1, date_trunc('hour', e.occurred_at)
      FROM tally.events_tail() e
      WHERE e.occurred_at >= $1 AND %s = 1
    ) x
    GROUP BY 1, 2
    ORDER BY 3 DESC, 1, 2$q$,
    (SELECT m.event_value FROM tally._rollup_metrics() m WHERE m.name = 'unpriced'))
  USING v_since;
END
$$;
COMMENT ON FUNCTION tally.unpriced_models(interval) IS
  'The (provider, model) pairs with unpriced events (tokens, but no tally.model_prices row matched, so the cost is unknown) in the UTC hours since now() - p_window (default 7 days, at most 90): how many events, in how many accounts, and the latest hour with one. Reads the hourly rows holding unpriced events (a partial index) and the unfolded tail, never the history. Most first. Service callers only. Errors: invalid_parameter (22023).';
REVOKE ALL ON FUNCTION tally.unpriced_models(interval) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.unpriced_models(interval) TO service_role;
