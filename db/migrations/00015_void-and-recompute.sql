-- Corrections: void events, and rebuild aggregates from the raw events.
--
-- Both rebuild whole buckets: the rows of the affected (account, bucket) pairs are deleted
-- and the events of those buckets with id <= watermark (not voided) are folded again, one
-- grain at a time. Holding the rollups' lock meanwhile keeps the watermark still, so the
-- rebuilt buckets and the incremental runs never count an event twice or miss one.
-- The bucket lists travel as arrays, never through temporary tables: these functions run
-- as the schema owner, and an object a caller left in pg_temp would run with its rights.

-- Rebuilds the buckets given as parallel arrays (grain, account_id, bucket as text) and
-- returns how many it rebuilt per grain.
CREATE FUNCTION tally._rebuild_rollups(p_grains text[], p_accounts uuid[], p_buckets text[]) RETURNS jsonb
  LANGUAGE plpgsql
  SET search_path = ''
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_watermark bigint := (SELECT s.watermark FROM tally.rollup_state s);
  v_grain     text;
  v_counts    jsonb := '{}';
  v_accounts  uuid[];
  v_from      timestamptz[];
  v_to        timestamptz[];
  v_keys      text[];
BEGIN
  FOREACH v_grain IN ARRAY ARRAY['hourly', 'daily', 'monthly'] LOOP
    -- the UTC time range that holds each bucket's events: an hour, or a local day or month
    -- of the account, widened by a day (the fold then keeps exactly the bucket's events)
    SELECT array_agg(r.account_id), array_agg(r.range_from), array_agg(r.range_to), array_agg(r.bucket)
    INTO v_accounts, v_from, v_to, v_keys
    FROM (
      SELECT DISTINCT k.account_id, k.bucket,
             CASE v_grain WHEN 'hourly' THEN k.bucket::timestamptz
                          ELSE ((k.bucket::date)::timestamp AT TIME ZONE a.timezone) - interval '1 day' END AS range_from,
             CASE v_grain WHEN 'hourly' THEN k.bucket::timestamptz + interval '1 hour'
                          WHEN 'daily' THEN ((k.bucket::date + 1)::timestamp AT TIME ZONE a.timezone) + interval '1 day'
                          ELSE ((k.bucket::date + interval '1 month') AT TIME ZONE a.timezone) + interval '1 day' END AS range_to
      FROM unnest(p_grains, p_accounts, p_buckets) AS k(grain, account_id, bucket)
      JOIN tally.accounts a ON a.id = k.account_id
      WHERE k.grain = v_grain
    ) r;
    v_counts := v_counts || jsonb_build_object(v_grain, coalesce(cardinality(v_accounts), 0));
    CONTINUE WHEN v_accounts IS NULL;

    EXECUTE format(
      'DELETE FROM tally.%I u USING unnest($2, $3, $4) AS k(grain, account_id, bucket)
        WHERE k.grain = $1 AND u.account_id = k.account_id AND u.bucket = k.bucket::%s',
      'usage_' || v_grain, CASE v_grain WHEN 'hourly' THEN 'timestamptz' ELSE 'date' END)
    USING v_grain, p_grains, p_accounts, p_buckets;
    PERFORM tally._fold_rollups('ranges', 0, v_watermark, ARRAY[v_grain], v_accounts, v_from, v_to, v_keys);
  END LOOP;
  RETURN v_counts;
END
$$;
COMMENT ON FUNCTION tally._rebuild_rollups(text[], uuid[], text[]) IS
  'Deletes the aggregate rows of the given buckets (parallel arrays grain, account_id, bucket text) and folds their events again (id <= watermark, not voided). Returns {hourly, daily, monthly} bucket counts. Callers hold the rollups'' lock.';
REVOKE ALL ON FUNCTION tally._rebuild_rollups(text[], uuid[], text[]) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.void_events(p_event_ids bigint[], p_reason text) RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  SET jit = off
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_accounts  uuid[];
  v_ids       bigint[];
  v_times     timestamptz[];
  v_missing   bigint[];
  v_voided    bigint;
  v_grains    text[];
  v_kaccounts uuid[];
  v_kbuckets  text[];
  v_rebuilt   jsonb := '{}';
BEGIN
  IF p_event_ids IS NULL OR cardinality(p_event_ids) = 0 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'event_ids: give at least one event id');
  END IF;
  IF cardinality(p_event_ids) > 100000 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'event_ids: at most 100000 per call');
  END IF;
  IF p_reason IS NULL OR length(btrim(p_reason)) NOT BETWEEN 1 AND 1000 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'reason: must be 1 to 1000 characters');
  END IF;
  PERFORM tally._require_read_committed('void_events');
  -- Wait for a running rollup, and keep new ones out until this transaction ends: the
  -- watermark must not move while buckets are rebuilt.
  PERFORM pg_advisory_xact_lock(hashtext('tally.run_rollups'));

  SELECT array_agg(e.account_id), array_agg(e.id), array_agg(e.occurred_at)
  INTO v_accounts, v_ids, v_times
  FROM tally.events e WHERE e.id = ANY (p_event_ids);
  SELECT array_agg(i ORDER BY i) INTO v_missing
  FROM (SELECT DISTINCT i FROM unnest(p_event_ids) i WHERE i IS NULL OR NOT i = ANY (coalesce(v_ids, '{}')) LIMIT 10) m;
  IF v_missing IS NOT NULL THEN
    PERFORM tally._raise('event_not_found', 'P0002', format('event_ids: no events %s', v_missing));
  END IF;

  -- new voids only: voiding twice keeps the first who/when/why
  WITH inserted AS (
    INSERT INTO tally.event_voids (account_id, event_id, occurred_at, voided_by, reason)
    SELECT t.account_id, t.event_id, t.occurred_at,
           tally._caller_role()::text || coalesce(' (user ' || (SELECT auth.uid())::text || ')', ''), btrim(p_reason)
    FROM unnest(v_accounts, v_ids, v_times) AS t(account_id, event_id, occurred_at)
    ON CONFLICT DO NOTHING
    RETURNING 1
  )
  SELECT count(*) INTO v_voided FROM inserted;

  -- the buckets the events had been counted in: only events the rollups already folded
  -- (later ones are simply skipped by the next run)
  SELECT array_agg(k.grain), array_agg(k.account_id), array_agg(k.bucket)
  INTO v_grains, v_kaccounts, v_kbuckets
  FROM (
    SELECT DISTINCT g.grain, t.account_id,
           CASE g.grain WHEN 'hourly' THEN date_trunc('hour', t.occurred_at, 'UTC')::text
                        WHEN 'daily' THEN (t.occurred_at AT TIME ZONE a.timezone)::date::text
                        ELSE date_trunc('month', t.occurred_at AT TIME ZONE a.timezone)::date::text END AS bucket
    FROM unnest(v_accounts, v_ids, v_times) AS t(account_id, event_id, occurred_at)
    JOIN tally.accounts a ON a.id = t.account_id
    CROSS JOIN (VALUES ('hourly'), ('daily'), ('monthly')) AS g(grain)
    WHERE t.event_id <= (SELECT s.watermark FROM tally.rollup_state s)
  ) k;
  IF v_grains IS NOT NULL THEN
    v_rebuilt := tally._rebuild_rollups(v_grains, v_kaccounts, v_kbuckets);
  END IF;
  RETURN jsonb_build_object('voided', v_voided, 'already_void', cardinality(v_ids) - v_voided, 'rebuilt_buckets', v_rebuilt);
END
$$;
COMMENT ON FUNCTION tally.void_events(bigint[], text) IS
  'Takes events out of every aggregate, for a reason (1 to 1000 characters): records who, when and why in tally.event_voids (the events stay in tally.events) and rebuilds exactly the hourly, daily and monthly buckets they had been counted in. Voiding twice keeps the first record. Returns {voided, already_void, rebuilt_buckets}. Errors: invalid_parameter (22023), event_not_found (P0002). Service callers only.';
REVOKE ALL ON FUNCTION tally.void_events(bigint[], text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.void_events(bigint[], text) TO service_role;

CREATE FUNCTION tally.recompute_rollups(p_from timestamptz, p_to timestamptz) RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  SET jit = off
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_watermark bigint;
  v_grains    text[];
  v_accounts  uuid[];
  v_buckets   text[];
  v_rebuilt   jsonb := '{"hourly": 0, "daily": 0, "monthly": 0}';
BEGIN
  PERFORM tally._check_rollup_range(p_from, p_to, 'recompute');
  PERFORM tally._require_read_committed('recompute_rollups');
  PERFORM pg_advisory_xact_lock(hashtext('tally.run_rollups'));
  v_watermark := (SELECT s.watermark FROM tally.rollup_state s);

  WITH candidates AS (
    -- the folded events that can fall in a bucket overlapping the range
    SELECT e.account_id, e.occurred_at, a.timezone,
           (p_from AT TIME ZONE a.timezone)::date AS from_day,
           ((p_to - interval '1 microsecond') AT TIME ZONE a.timezone)::date AS to_day
    FROM tally.events e
    JOIN tally.accounts a ON a.id = e.account_id
    WHERE e.id <= v_watermark
      AND e.occurred_at >= p_from - interval '32 days' AND e.occurred_at < p_to + interval '32 days'
  ),
  event_keys AS (
    SELECT 'hourly' AS grain, c.account_id, date_trunc('hour', c.occurred_at, 'UTC')::text AS bucket
    FROM candidates c WHERE c.occurred_at >= date_trunc('hour', p_from, 'UTC') AND c.occurred_at < p_to
    UNION
    SELECT 'daily', c.account_id, (c.occurred_at AT TIME ZONE c.timezone)::date::text
    FROM candidates c WHERE (c.occurred_at AT TIME ZONE c.timezone)::date BETWEEN c.from_day AND c.to_day
    UNION
    SELECT 'monthly', c.account_id, date_trunc('month', c.occurred_at AT TIME ZONE c.timezone)::date::text
    FROM candidates c
    WHERE date_trunc('month', c.occurred_at AT TIME ZONE c.timezone) BETWEEN date_trunc('month', c.from_day) AND date_trunc('month', c.to_day)
  ),
  row_keys AS (
    -- buckets that hold rows but may no longer have events (all voided, or a bug)
    SELECT 'hourly' AS grain, u.account_id, u.bucket::text AS bucket FROM tally.usage_hourly u
    WHERE u.bucket >= date_trunc('hour', p_from, 'UTC') AND u.bucket < p_to
    UNION
    SELECT 'daily', u.account_id, u.bucket::text FROM tally.usage_daily u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN (p_from AT TIME ZONE a.timezone)::date AND ((p_to - interval '1 microsecond') AT TIME ZONE a.timezone)::date
    UNION
    SELECT 'monthly', u.account_id, u.bucket::text FROM tally.usage_monthly u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN date_trunc('month', (p_from AT TIME ZONE a.timezone))::date
                       AND date_trunc('month', ((p_to - interval '1 microsecond') AT TIME ZONE a.timezone))::date
  ),
  all_keys AS (
    -- hourly and daily buckets past their own retention stay deleted
    SELECT k.grain, k.account_id, k.bucket
    FROM (SELECT grain, account_id, bucket FROM event_keys UNION SELECT grain, account_id, bucket FROM row_keys) k
    WHERE (k.grain <> 'hourly' OR k.bucket::timestamptz >= tally._retention_floor('hourly'))
      AND (k.grain <> 'daily' OR k.bucket::date >= tally._retention_floor('daily')::date)
  )
  SELECT array_agg(k.grain), array_agg(k.account_id), array_agg(k.bucket) INTO v_grains, v_accounts, v_buckets FROM all_keys k;

  IF v_grains IS NOT NULL THEN
    v_rebuilt := tally._rebuild_rollups(v_grains, v_accounts, v_buckets);
  END IF;
  RETURN jsonb_build_object('rebuilt_buckets', v_rebuilt, 'watermark', v_watermark, 'from', p_from, 'to', p_to);
END
$$;
COMMENT ON FUNCTION tally.recompute_rollups(timestamptz, timestamptz) IS
  'Rebuilds every hourly, daily and monthly bucket that overlaps [p_from, p_to) (at most 400 days) from the raw events the rollups have folded (id <= watermark, not voided): after a reprice, a void or a bug fix. Refuses a range starting before the retention of raw events (past_retention, 22023); hourly and daily buckets past their own retention are left alone. Idempotent; runs never overlap it. Returns {rebuilt_buckets: {hourly, daily, monthly}, watermark}. Service callers only.';
REVOKE ALL ON FUNCTION tally.recompute_rollups(timestamptz, timestamptz) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.recompute_rollups(timestamptz, timestamptz) TO service_role;
