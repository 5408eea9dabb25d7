-- Verification: recompute the aggregates of a time range straight from the raw events and
-- compare them with usage_hourly, usage_daily and usage_monthly, metric by metric.
--
-- Only events the rollups have folded (id <= watermark, not voided) are counted, and the watermark is
-- read in the same statement as the aggregates, so a run committing meanwhile cannot make
-- a consistent state look wrong. Every bucket that overlaps the range is checked whole: its
-- expected value comes from all of its events, even those outside the range.

-- The range rules shared by verify_rollups and recompute_rollups, which both work on the
-- whole buckets that overlap a range: a bounded span, and raw events still there for every
-- bucket it touches.
CREATE FUNCTION tally._check_rollup_range(p_from timestamptz, p_to timestamptz, p_verb text) RETURNS void
  LANGUAGE plpgsql STABLE
  SET search_path = ''
  AS $$
BEGIN
  IF p_from IS NULL OR p_to IS NULL OR p_from >= p_to THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('from, to: need from < to (got %s, %s)', p_from, p_to));
  END IF;
  IF p_to - p_from > interval '400 days' THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('from, to: at most 400 days per call; %s a long history in pieces', p_verb));
  END IF;
  -- the monthly buckets a range touches reach back to the start of its (local) month
  IF p_from < tally._retention_floor('events') + interval '32 days' THEN
    PERFORM tally._raise('past_retention', '22023',
      format('from: must be at least 32 days after %s, where raw events past retention (setting retention.events) may be gone; cannot %s rollups there',
             tally._retention_floor('events'), p_verb));
  END IF;
END
$$;
COMMENT ON FUNCTION tally._check_rollup_range(timestamptz, timestamptz, text) IS
  'Raises invalid_parameter unless from < to within 400 days, and past_retention when the range starts less than 32 days after the raw events'' retention cutoff.';
REVOKE ALL ON FUNCTION tally._check_rollup_range(timestamptz, timestamptz, text) FROM PUBLIC, anon, authenticated, service_role;

-- The metrics of a stored aggregate row as JSON, in the shape verify_rollups compares.
CREATE FUNCTION tally._usage_metrics(
  p_requests bigint, p_successful bigint, p_failed bigint, p_cached bigint, p_files numeric, p_bytes numeric,
  p_tokens_in numeric, p_tokens_out numeric, p_cost_usd numeric, p_potential_cost_usd numeric, p_quantity numeric,
  p_latency_count bigint, p_latency_sum numeric, p_latency_max integer, p_latency_hist bigint[])
  RETURNS jsonb
  LANGUAGE sql IMMUTABLE
  AS $$
    select pg_catalog.jsonb_build_object(
      'requests', p_requests, 'successful', p_successful, 'failed', p_failed, 'cached', p_cached,
      'files', p_files, 'bytes', p_bytes, 'tokens_in', p_tokens_in, 'tokens_out', p_tokens_out,
      'cost_usd', p_cost_usd, 'potential_cost_usd', p_potential_cost_usd, 'quantity', p_quantity,
      'latency_count', p_latency_count, 'latency_sum', p_latency_sum, 'latency_max', p_latency_max,
      'latency_hist', pg_catalog.to_jsonb(p_latency_hist))
  $$;
COMMENT ON FUNCTION tally._usage_metrics(bigint, bigint, bigint, bigint, numeric, numeric, numeric, numeric, numeric, numeric, numeric, bigint, numeric, integer, bigint[]) IS
  'The metrics of one aggregate row as a JSON object (the shape tally.verify_rollups reports).';
REVOKE ALL ON FUNCTION tally._usage_metrics(bigint, bigint, bigint, bigint, numeric, numeric, numeric, numeric, numeric, numeric, numeric, bigint, numeric, integer, bigint[]) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.verify_rollups(p_from timestamptz, p_to timestamptz)
  RETURNS TABLE (grain text, account_id uuid, bucket text, dim_key uuid, expected jsonb, actual jsonb)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = ''
  SET jit = off
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $$
BEGIN
  PERFORM tally._check_rollup_range(p_from, p_to, 'verify');

  RETURN QUERY
  WITH state AS (
    SELECT s.watermark FROM tally.rollup_state s
  ),
  folded AS MATERIALIZED (
    -- the folded events that can fall in a bucket overlapping the range (a month either
    -- side covers any local month or day around it), with their three bucket keys
    SELECT e.account_id,
           date_trunc('hour', e.occurred_at, 'UTC') AS hour_utc,
           (e.occurred_at AT TIME ZONE a.timezone)::date AS local_day,
           (p_from AT TIME ZONE a.timezone)::date AS from_day,
           ((p_to - interval '1 microsecond') AT TIME ZONE a.timezone)::date AS to_day,
           tally._dim_key(e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type) AS dim_key,
           e.success, e.cached, e.files, e.bytes, e.tokens_in, e.tokens_out, e.cost_usd, e.potential_cost_usd,
           e.quantity, e.latency_ms
    FROM tally.events e
    JOIN tally.accounts a ON a.id = e.account_id
    CROSS JOIN state s
    WHERE e.id <= s.watermark
      AND e.occurred_at >= p_from - interval '32 days' AND e.occurred_at < p_to + interval '32 days'
      AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
  ),
  keyed AS (
    -- each folded event once per grain whose bucket overlaps the range
    SELECT 'hourly' AS grain, f.account_id, f.hour_utc::text AS bucket, f.dim_key, f.success, f.cached, f.files, f.bytes, f.tokens_in, f.tokens_out, f.cost_usd, f.potential_cost_usd, f.quantity, f.latency_ms
    FROM folded f
    WHERE f.hour_utc >= date_trunc('hour', p_from, 'UTC') AND f.hour_utc < p_to AND f.hour_utc >= tally._retention_floor('hourly')
    UNION ALL
    SELECT 'daily', f.account_id, f.local_day::text, f.dim_key, f.success, f.cached, f.files, f.bytes, f.tokens_in, f.tokens_out, f.cost_usd, f.potential_cost_usd, f.quantity, f.latency_ms
    FROM folded f
    WHERE f.local_day BETWEEN f.from_day AND f.to_day AND f.local_day >= tally._retention_floor('daily')::date
    UNION ALL
    SELECT 'monthly', f.account_id, date_trunc('month', f.local_day)::date::text, f.dim_key, f.success, f.cached, f.files, f.bytes, f.tokens_in, f.tokens_out, f.cost_usd, f.potential_cost_usd, f.quantity, f.latency_ms
    FROM folded f
    WHERE date_trunc('month', f.local_day) BETWEEN date_trunc('month', f.from_day) AND date_trunc('month', f.to_day)
  ),
  expected AS (
    SELECT k.grain, k.account_id, k.bucket, k.dim_key, jsonb_build_object(
             'requests', count(*), 'successful', count(*) FILTER (WHERE k.success),
             'failed', count(*) FILTER (WHERE NOT k.success), 'cached', count(*) FILTER (WHERE k.cached),
             'files', coalesce(sum(k.files), 0), 'bytes', coalesce(sum(k.bytes), 0),
             'tokens_in', coalesce(sum(k.tokens_in), 0), 'tokens_out', coalesce(sum(k.tokens_out), 0),
             'cost_usd', coalesce(sum(k.cost_usd), 0), 'potential_cost_usd', coalesce(sum(k.potential_cost_usd), 0),
             'quantity', sum(k.quantity), 'latency_count', count(k.latency_ms),
             'latency_sum', coalesce(sum(k.latency_ms), 0), 'latency_max', max(k.latency_ms),
             'latency_hist', to_jsonb(tally._hist_agg(width_bucket(k.latency_ms, tally.latency_buckets()), CASE WHEN k.latency_ms IS NOT NULL THEN 1 END))) AS m
    FROM keyed k
    GROUP BY 1, 2, 3, 4
  ),
  actual AS (
    -- the stored rows of the same buckets
    SELECT 'hourly' AS grain, u.account_id, u.bucket::text AS bucket, u.dim_key, tally._usage_metrics(u.requests, u.successful, u.failed,
             u.cached, u.files, u.bytes, u.tokens_in, u.tokens_out, u.cost_usd, u.potential_cost_usd, u.quantity,
             u.latency_count, u.latency_sum, u.latency_max, u.latency_hist) AS m
    FROM tally.usage_hourly u
    WHERE u.bucket >= date_trunc('hour', p_from, 'UTC') AND u.bucket < p_to AND u.bucket >= tally._retention_floor('hourly')
    UNION ALL
    SELECT 'daily', u.account_id, u.bucket::text, u.dim_key, tally._usage_metrics(u.requests, u.successful, u.failed,
             u.cached, u.files, u.bytes, u.tokens_in, u.tokens_out, u.cost_usd, u.potential_cost_usd, u.quantity,
             u.latency_count, u.latency_sum, u.latency_max, u.latency_hist)
    FROM tally.usage_daily u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN (p_from AT TIME ZONE a.timezone)::date AND ((p_to - interval '1 microsecond') AT TIME ZONE a.timezone)::date
      AND u.bucket >= tally._retention_floor('daily')::date
    UNION ALL
    SELECT 'monthly', u.account_id, u.bucket::text, u.dim_key, tally._usage_metrics(u.requests, u.successful, u.failed,
             u.cached, u.files, u.bytes, u.tokens_in, u.tokens_out, u.cost_usd, u.potential_cost_usd, u.quantity,
             u.latency_count, u.latency_sum, u.latency_max, u.latency_hist)
    FROM tally.usage_monthly u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN date_trunc('month', (p_from AT TIME ZONE a.timezone))::date
                       AND date_trunc('month', ((p_to - interval '1 microsecond') AT TIME ZONE a.timezone))::date
  )
  -- a bucket missing on either side, or any metric that differs
  SELECT coalesce(x.grain, y.grain), coalesce(x.account_id, y.account_id), coalesce(x.bucket, y.bucket),
         coalesce(x.dim_key, y.dim_key), x.m, y.m
  FROM expected x
  FULL JOIN actual y ON y.grain = x.grain AND y.account_id = x.account_id AND y.bucket = x.bucket AND y.dim_key = x.dim_key
  WHERE x.m IS DISTINCT FROM y.m
  ORDER BY 1, 2, 3, 4;
END
$$;
COMMENT ON FUNCTION tally.verify_rollups(timestamptz, timestamptz) IS
  'Compares every hourly, daily and monthly bucket that overlaps [p_from, p_to) (at most 400 days) with the folded raw events (id <= watermark), metric by metric (hourly and daily buckets past their retention are skipped). Refuses a range starting before the retention of raw events (past_retention, 22023). Returns one row per bucket and dimension tuple that differs (expected from events, actual stored; NULL when missing); no rows = consistent. Service callers only.';
REVOKE ALL ON FUNCTION tally.verify_rollups(timestamptz, timestamptz) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.verify_rollups(timestamptz, timestamptz) TO service_role;

CREATE FUNCTION tally.verify_previous_day() RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
DECLARE
  v_from  timestamptz := date_trunc('day', now(), 'UTC') - interval '1 day';
  v_to    timestamptz := date_trunc('day', now(), 'UTC');
  v_count bigint;
  v_first jsonb;
BEGIN
  SELECT count(*), jsonb_agg(jsonb_build_object('grain', v.grain, 'account_id', v.account_id, 'bucket', v.bucket))
           FILTER (WHERE v.n <= 5)
  INTO v_count, v_first
  FROM (SELECT r.*, row_number() OVER () AS n FROM tally.verify_rollups(v_from, v_to) r) v;
  IF v_count > 0 THEN
    PERFORM tally._raise('rollups_mismatch', 'P0001',
      format('%s rollup bucket(s) differ from the raw events of %s (first: %s); run `tally verify --from %s --to %s`',
             v_count, to_char(v_from, 'YYYY-MM-DD'), v_first, v_from, v_to));
  END IF;
  RETURN jsonb_build_object('from', v_from, 'to', v_to, 'mismatches', 0);
END
$$;
COMMENT ON FUNCTION tally.verify_previous_day() IS
  'The daily verification job: tally.verify_rollups over yesterday (UTC). Returns {from, to, mismatches: 0}, or raises rollups_mismatch (P0001) naming the first buckets that differ, so the failed run shows in tally.job_runs and tally status. Service callers only.';
REVOKE ALL ON FUNCTION tally.verify_previous_day() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.verify_previous_day() TO service_role;
