-- A faster fold: the latency histogram is counted in the one pass over the events instead
-- of splitting every group by latency bucket.
--
-- Before: the pass over the events grouped by (account, hour, local day, dimensions,
-- latency bucket), about 12 times as many groups as without the bucket, and each grain's
-- upsert rebuilt the histogram with a PL/pgSQL state function called once per group, and
-- merged it into an existing row with a SQL function (tally._hist_add) per conflicting row.
-- Now: the pass groups by (account, hour, local day, dimensions) and counts the 42 slots
-- as 42 filtered counts; each grain sums the 42 columns and merges into a stored row slot
-- by slot with plain array arithmetic (rows are written only by the fold: 1-based, 42
-- slots). With nearly one group per event (e.g. thousands of distinct models in a chunk)
-- the wider groups cost more than before; typical dimensions have far fewer values.
-- The results are the same numbers (test/rollups.test.ts compares them with verify_rollups
-- and with direct computations); only the work to get there changed.
-- The statement is still assembled from constant pieces only (no input reaches it).

-- The fold's hash tables get their own memory budget, whatever the session's work_mem (a
-- setting, so a DBA can lower it on a small instance).
INSERT INTO tally.settings (name, kind, value, default_value, min_value, max_value, description) VALUES
  ('rollups.work_mem_mb', 'integer', '32', '32', '4', '4096',
   'work_mem (MB) of the rollup fold, whatever the session''s: its GROUP BY hashes the groups of a chunk in up to this times hash_mem_multiplier and spills to disk beyond. One fold runs at a time.');

CREATE OR REPLACE FUNCTION tally._fold_rollups(p_source text, p_lo bigint, p_hi bigint, p_grains text[],
                                    p_range_accounts uuid[] DEFAULT NULL, p_range_from timestamptz[] DEFAULT NULL,
                                    p_range_to timestamptz[] DEFAULT NULL, p_range_buckets text[] DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  SET jit = off
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  -- The planner guesses far more groups than a chunk has (one per event) and would sort
  -- them, or plan a hash table that spills at the default 4 MB. Hashing in
  -- rollups.work_mem_mb x hash_mem_multiplier (one run at a time) keeps a chunk's groups in
  -- memory; larger ones still spill to disk, they never fail. The SET clause scopes the
  -- set_config below to this function: the caller's work_mem is back when it returns.
  SET work_mem = '32MB'
  SET enable_sort = off
  AS $$
DECLARE
  v_from      text;
  v_where     text;
  v_slots     text;  -- base: the 42 filtered counts h0..h41
  v_sums      text;  -- a grain: ARRAY[sum(h0), ..., sum(h41)]
  v_merge     text;  -- on conflict: the stored histogram plus the new one, slot by slot
  v_upserts   text;
  v_events    bigint;
BEGIN
  PERFORM set_config('work_mem', tally._setting_int('rollups.work_mem_mb') || 'MB', true);
  IF p_source = 'window' THEN
    v_from := 'tally.events e JOIN tally.accounts a ON a.id = e.account_id';
    v_where := 'e.id > $1 AND e.id <= $2';
  ELSIF p_source = 'ranges' THEN
    -- the range finds the candidates; the bucket expression of the fold itself decides,
    -- so a local midnight that happens twice (a DST change at 00:00) cannot disagree
    IF cardinality(p_grains) <> 1 THEN
      RAISE EXCEPTION 'ranges fold one grain at a time';
    END IF;
    v_from := 'unnest($3, $4, $5, $6) AS r(account_id, range_from, range_to, bucket)'
              ' JOIN tally.events e ON e.account_id = r.account_id AND e.occurred_at >= r.range_from AND e.occurred_at < r.range_to'
              ' JOIN tally.accounts a ON a.id = e.account_id';
    v_where := 'e.id <= $2 AND ' || CASE p_grains[1]
      WHEN 'hourly' THEN 'date_trunc(''hour'', e.occurred_at, ''UTC'') = r.bucket::timestamptz'
      WHEN 'daily' THEN '(e.occurred_at AT TIME ZONE a.timezone)::date = r.bucket::date'
      ELSE 'date_trunc(''month'', e.occurred_at AT TIME ZONE a.timezone)::date = r.bucket::date' END;
  ELSE
    RAISE EXCEPTION 'unknown fold source %', p_source;
  END IF;

  -- slot k (0-based) holds what width_bucket(latency_ms, tally.latency_buckets()) puts
  -- there: [bounds[k], bounds[k+1]), slot 0 below bounds[1], slot 41 from bounds[41] on.
  -- Plain comparisons with constants: the cheapest test an executor can do 42 times a row.
  SELECT string_agg(format('count(*) FILTER (WHERE %s) AS h%s',
                           concat_ws(' AND ', CASE WHEN k > 0 THEN format('w.latency_ms >= %s', b[k]) END,
                                              CASE WHEN k < 41 THEN format('w.latency_ms < %s', b[k + 1]) END), k), ', ' ORDER BY k),
         'ARRAY[' || string_agg(format('sum(b.h%s)::bigint', k), ', ' ORDER BY k) || ']',
         'ARRAY[' || string_agg(format('u.latency_hist[%s] + excluded.latency_hist[%s]', k + 1, k + 1), ', ' ORDER BY k) || ']'
  INTO v_slots, v_sums, v_merge
  FROM generate_series(0, 41) AS k, tally.latency_buckets() AS b;

  SELECT string_agg(format($u$,
  %1$s AS (
    INSERT INTO tally.%2$I AS u
    SELECT b.account_id, %3$s, b.dim_key, b.api_key_id, b.event_type, b.provider, b.model, b.endpoint, b.file_type,
           sum(b.requests), sum(b.successful), sum(b.failed), sum(b.cached), sum(b.files), sum(b.bytes), sum(b.tokens_in),
           sum(b.tokens_out), sum(b.cost_usd), sum(b.potential_cost_usd), sum(b.quantity), sum(b.latency_count),
           sum(b.latency_sum), max(b.latency_max), %4$s
    FROM base b
    GROUP BY b.account_id, %3$s, b.dim_key, b.api_key_id, b.event_type, b.provider, b.model, b.endpoint, b.file_type
    ON CONFLICT (account_id, bucket, dim_key) DO UPDATE SET
      requests = u.requests + excluded.requests, successful = u.successful + excluded.successful,
      failed = u.failed + excluded.failed, cached = u.cached + excluded.cached, files = u.files + excluded.files,
      bytes = u.bytes + excluded.bytes, tokens_in = u.tokens_in + excluded.tokens_in,
      tokens_out = u.tokens_out + excluded.tokens_out, cost_usd = u.cost_usd + excluded.cost_usd,
      potential_cost_usd = u.potential_cost_usd + excluded.potential_cost_usd, quantity = u.quantity + excluded.quantity,
      latency_count = u.latency_count + excluded.latency_count, latency_sum = u.latency_sum + excluded.latency_sum,
      latency_max = greatest(u.latency_max, excluded.latency_max),
      latency_hist = %5$s
    RETURNING 1
  )$u$, g.grain, 'usage_' || g.grain, g.bucket, v_sums, v_merge), '' ORDER BY g.ord)
  INTO v_upserts
  FROM (VALUES (1, 'hourly', 'b.hour_utc'),
               (2, 'daily', 'b.local_day'),
               (3, 'monthly', 'date_trunc(''month'', b.local_day)::date')) AS g(ord, grain, bucket)
  WHERE g.grain = ANY (p_grains);
  IF v_upserts IS NULL THEN
    RAISE EXCEPTION 'no known grain in %', p_grains;
  END IF;

  EXECUTE format($q$
  WITH window_events AS (
    -- the events to fold, with their account's time zone
    SELECT e.account_id, e.occurred_at, a.timezone, e.api_key_id, e.event_type, e.provider, e.model, e.endpoint,
           e.file_type, e.success, e.cached, e.files, e.bytes, e.tokens_in, e.tokens_out, e.cost_usd,
           e.potential_cost_usd, e.quantity, e.latency_ms
    FROM %1$s
    WHERE %2$s
      AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
  ),
  base AS MATERIALIZED (
    -- one pass over the events: partial sums and histogram per UTC hour x local day x
    -- dimensions (an hour can straddle two local days in zones with :30 or :45 offsets)
    SELECT w.account_id,
           date_trunc('hour', w.occurred_at) AS hour_utc,  -- TimeZone is UTC here (SET above)
           (w.occurred_at AT TIME ZONE w.timezone)::date AS local_day,
           -- computed per group, not per event
           tally._dim_key(w.api_key_id, w.event_type, w.provider, w.model, w.endpoint, w.file_type) AS dim_key,
           w.api_key_id, w.event_type, w.provider, w.model, w.endpoint, w.file_type,
           count(*) AS requests,
           count(*) FILTER (WHERE w.success) AS successful,
           count(*) FILTER (WHERE NOT w.success) AS failed,
           count(*) FILTER (WHERE w.cached) AS cached,
           coalesce(sum(w.files), 0) AS files,
           coalesce(sum(w.bytes), 0) AS bytes,
           coalesce(sum(w.tokens_in), 0) AS tokens_in,
           coalesce(sum(w.tokens_out), 0) AS tokens_out,
           coalesce(sum(w.cost_usd), 0) AS cost_usd,
           coalesce(sum(w.potential_cost_usd), 0) AS potential_cost_usd,
           sum(w.quantity) AS quantity,
           count(w.latency_ms) AS latency_count,
           coalesce(sum(w.latency_ms), 0) AS latency_sum,
           max(w.latency_ms) AS latency_max,
           %3$s
    FROM window_events w
    GROUP BY 1, 2, 3, 5, 6, 7, 8, 9, 10
  )%4$s
  SELECT coalesce(sum(b.requests), 0) FROM base b$q$, v_from, v_where, v_slots, v_upserts)
  INTO v_events
  USING p_lo, p_hi, p_range_accounts, p_range_from, p_range_to, p_range_buckets;
  RETURN v_events;
END
$$;
COMMENT ON FUNCTION tally._fold_rollups(text, bigint, bigint, text[], uuid[], timestamptz[], timestamptz[], text[]) IS
  'Folds events into the given grains (hourly, daily, monthly) with additive upserts and returns how many: the id window (p_lo, p_hi] for source window, or, for source ranges (one grain), the events with id <= p_hi in the given (account, from, to, bucket) rows whose bucket is that bucket. Voided events are skipped.';
