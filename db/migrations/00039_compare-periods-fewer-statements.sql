-- compare_periods plans its statements once per session.
--
-- compare_periods asks tally._usage_between, which asks tally._usage_by twice (the whole
-- local days from the daily rows, the whole UTC hours left from the hourly ones, or their
-- totals when nothing is filtered): four statements, each built and planned at every call
-- (about 2 ms apiece) for a few dozen rows. The statements of compare_periods and
-- tally._usage_between are now written into the functions when this migration runs (the
-- metric lists are constant, and the filters are parameters), so PL/pgSQL plans them once
-- per session. Reading the whole days as hourly totals too was measured and not kept: 720
-- rows an hour for a month to date cost more than the daily rows' separate read.

DO $do$
DECLARE
  v_parts record := tally._usage_sql_parts();
BEGIN
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION tally._usage_between(p_account_id uuid, p_lo timestamptz[], p_hi timestamptz[],
    p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[])
  RETURNS TABLE (idx integer, requests bigint, successful bigint, failed bigint, cached bigint,
                 files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, cost_usd numeric,
                 potential_cost_usd numeric, quantity numeric, unpriced bigint, latency_count bigint,
                 latency_sum numeric, latency_max integer, latency_hist bigint[])
  LANGUAGE plpgsql STABLE
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  SET jit = off
  AS $b$
#variable_conflict use_column
DECLARE
  v_tz      text;
  v_i       integer;
  v_lo      timestamptz;
  v_hi      timestamptz;
  v_d1      date;   -- the first whole local day of a range
  v_d2      date;   -- the last
  v_day_idx integer[] := '{}'; v_day_from date[] := '{}'; v_day_to date[] := '{}';
  v_hour_idx integer[] := '{}'; v_hour_lo timestamptz[] := '{}'; v_hour_hi timestamptz[] := '{}';
  v_raw_idx integer[] := '{}'; v_raw_lo timestamptz[] := '{}'; v_raw_hi timestamptz[] := '{}';
  v_edge    record;
  v_h1      timestamptz;
  v_h2      timestamptz;
BEGIN
  SELECT a.timezone INTO v_tz FROM tally.accounts a WHERE a.id = p_account_id;
  FOR v_i IN 1..coalesce(cardinality(p_lo), 0) LOOP
    v_lo := p_lo[v_i];
    v_hi := p_hi[v_i];
    CONTINUE WHEN v_lo >= v_hi;
    -- whole local days: from the first local midnight at or after lo to the last at or before hi
    v_d1 := (v_lo AT TIME ZONE v_tz)::date;
    IF tally._local_start(v_d1::timestamp, v_tz) < v_lo THEN
      v_d1 := v_d1 + 1;
    END IF;
    v_d2 := (v_hi AT TIME ZONE v_tz)::date - 1;   -- the day before the one hi falls in
    IF tally._local_start((v_d2 + 2)::timestamp, v_tz) <= v_hi THEN
      v_d2 := v_d2 + 1;
    END IF;
    IF v_d1 <= v_d2 THEN
      v_day_idx := v_day_idx || v_i; v_day_from := v_day_from || v_d1; v_day_to := v_day_to || v_d2;
    END IF;
    -- the edges outside the whole days (or the whole range when it holds none)
    FOR v_edge IN
      SELECT x.a, x.b FROM (VALUES
        (v_lo, CASE WHEN v_d1 <= v_d2 THEN tally._local_start(v_d1::timestamp, v_tz) ELSE v_hi END),
        (CASE WHEN v_d1 <= v_d2 THEN tally._local_start((v_d2 + 1)::timestamp, v_tz) ELSE v_hi END, v_hi)) AS x(a, b)
      WHERE x.a < x.b
    LOOP
      -- whole UTC hours inside the edge, and the pieces of hours around them
      v_h1 := date_trunc('hour', v_edge.a, 'UTC');
      IF v_h1 < v_edge.a THEN
        v_h1 := v_h1 + interval '1 hour';
      END IF;
      v_h2 := date_trunc('hour', v_edge.b, 'UTC');
      IF v_h1 < v_h2 THEN
        v_hour_idx := v_hour_idx || v_i; v_hour_lo := v_hour_lo || v_h1; v_hour_hi := v_hour_hi || v_h2;
        IF v_edge.a < v_h1 THEN
          v_raw_idx := v_raw_idx || v_i; v_raw_lo := v_raw_lo || v_edge.a; v_raw_hi := v_raw_hi || v_h1;
        END IF;
        IF v_h2 < v_edge.b THEN
          v_raw_idx := v_raw_idx || v_i; v_raw_lo := v_raw_lo || v_h2; v_raw_hi := v_raw_hi || v_edge.b;
        END IF;
      ELSE
        v_raw_idx := v_raw_idx || v_i; v_raw_lo := v_raw_lo || v_edge.a; v_raw_hi := v_raw_hi || v_edge.b;
      END IF;
    END LOOP;
  END LOOP;

  RETURN QUERY
    SELECT y.idx, y.requests, y.successful, y.failed, y.cached, y.files, y.bytes, y.tokens_in, y.tokens_out,
           y.cost_usd, y.potential_cost_usd, y.quantity, y.unpriced, y.latency_count, y.latency_sum, y.latency_max, y.latency_hist
    FROM (
      SELECT x.idx, %1$s
      FROM (
        -- whole days
        SELECT d.idx, %2$s
        FROM unnest(v_day_idx, v_day_from, v_day_to) AS d(idx, from_day, to_day)
        JOIN (SELECT r.day, %4$s
              FROM tally._usage_by(p_account_id, 'day', NULL, NULL, (SELECT min(f) FROM unnest(v_day_from) f), (SELECT max(t) FROM unnest(v_day_to) t), NULL,
                                   p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types) r
              WHERE cardinality(v_day_idx) > 0) u ON u.day BETWEEN d.from_day AND d.to_day
        UNION ALL
        -- whole hours
        SELECT h.idx, %2$s
        FROM unnest(v_hour_idx, v_hour_lo, v_hour_hi) AS h(idx, lo, hi)
        JOIN (SELECT r.hour, %4$s
              FROM tally._usage_by(p_account_id, 'hour', v_hour_lo, v_hour_hi, NULL, NULL, NULL,
                                   p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types) r
              WHERE cardinality(v_hour_idx) > 0) u ON u.hour >= h.lo AND u.hour < h.hi
        UNION ALL
        -- the pieces of hours, from the raw events (folded or not)
        SELECT r.idx, %3$s
        FROM unnest(v_raw_idx, v_raw_lo, v_raw_hi) AS r(idx, lo, hi)
        -- one index range per piece (a join would read all the account's events once)
        CROSS JOIN LATERAL (
          SELECT e.* FROM tally.events e
          WHERE e.account_id = p_account_id AND e.occurred_at >= r.lo AND e.occurred_at < r.hi
            AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
            AND (p_api_key_ids IS NULL OR e.api_key_id = ANY (p_api_key_ids))
            AND (p_event_types IS NULL OR e.event_type = ANY (p_event_types))
            AND (p_providers IS NULL OR e.provider = ANY (p_providers))
            AND (p_models IS NULL OR e.model = ANY (p_models))
            AND (p_endpoints IS NULL OR e.endpoint = ANY (p_endpoints))
            AND (p_file_types IS NULL OR e.file_type = ANY (p_file_types))
        ) e
        GROUP BY r.idx
      ) x(idx, %5$s)
      GROUP BY x.idx
    ) y;
END
$b$$f$,
    v_parts.outer_sums, v_parts.stored, v_parts.tail,
    -- a row of tally._usage_by as the columns of a stored row
    'r.requests, r.successful, r.failed, r.cached, r.files, r.bytes, r.tokens_in, r.tokens_out, r.cost_usd, r.potential_cost_usd, '
    'r.quantity, r.latency_count, r.latency_sum, r.latency_max, r.latency_hist, r.unpriced',
    v_parts.columns);
END
$do$;
COMMENT ON FUNCTION tally._usage_between(uuid, timestamptz[], timestamptz[], uuid[], text[], text[], text[], text[], text[]) IS
  'The usage of one account in exact instant ranges [p_lo[i], p_hi[i]), one row per range with events (idx = i), as raw sums: whole local days from the daily aggregates, the remaining whole UTC hours from the hourly ones (their totals when nothing is filtered), both with the tail, and the pieces of hours at the edges from the raw events. The statement is written into the function from tally._usage_sql_parts() (planned once per session). Callers check access and arguments first.';

DO $do$
BEGIN
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION tally.compare_periods(p_account_id uuid, p_period text DEFAULT 'month', p_at timestamptz DEFAULT now(),
    p_api_key_ids uuid[] DEFAULT NULL, p_event_types text[] DEFAULT NULL, p_providers text[] DEFAULT NULL,
    p_models text[] DEFAULT NULL, p_endpoints text[] DEFAULT NULL, p_file_types text[] DEFAULT NULL)
  RETURNS TABLE (metric text, current_value numeric, previous_value numeric, change numeric, change_pct numeric,
                 current_from timestamptz, current_to timestamptz, previous_from timestamptz, previous_to timestamptz)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  SET jit = off
  AS $b$
#variable_conflict use_column
DECLARE
  v_tz         text := tally._require_usage_reader(p_account_id);
  v_local      timestamp;
  v_cur_from   timestamptz;
  v_prev_from  timestamptz;
  v_prev_to    timestamptz;
  v_step       interval;
BEGIN
  PERFORM tally._check_usage_filters(p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types);
  IF p_period IS NULL OR p_period NOT IN ('day', 'week', 'month') THEN
    PERFORM tally._raise('invalid_parameter', format('period: must be day, week or month (got %%s)', coalesce(p_period, 'NULL')));
  ELSIF p_at IS NULL THEN
    PERFORM tally._raise('invalid_parameter', 'at: is required (default now())');
  END IF;
  v_step := CASE p_period WHEN 'day' THEN interval '1 day' WHEN 'week' THEN interval '7 days' ELSE interval '1 month' END;
  v_local := p_at AT TIME ZONE v_tz;
  -- the local calendar: the period holding p_at, and the one before it
  v_cur_from := tally._local_start(date_trunc(p_period, v_local), v_tz);
  v_prev_from := tally._local_start(date_trunc(p_period, v_local) - v_step, v_tz);
  -- the same elapsed time, in seconds (an interval of days would follow the session's zone)
  v_prev_to := least(v_prev_from + extract(epoch FROM p_at - v_cur_from) * interval '1 second', v_cur_from);
  IF v_prev_from < date_trunc('hour', tally._retention_floor('hourly'), 'UTC') THEN
    PERFORM tally._raise('past_retention', format('at: the previous %%s starts before %%s, where hourly usage is past retention (setting retention.hourly)',
                                                  p_period, date_trunc('hour', tally._retention_floor('hourly'), 'UTC')));
  END IF;

  RETURN QUERY
    WITH sums AS (
      SELECT i.idx, %1$s
      FROM unnest(ARRAY[1, 2]) AS i(idx)
      LEFT JOIN tally._usage_between(p_account_id, ARRAY[v_cur_from, v_prev_from], ARRAY[p_at, v_prev_to],
                                     p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types) r ON r.idx = i.idx
      CROSS JOIN LATERAL tally._latency_percentiles(r.latency_hist, r.latency_max) AS r_pct
    )
    SELECT m.metric, m.cur, m.prev, m.cur - m.prev,
           CASE WHEN m.prev IS NOT NULL AND m.prev <> 0 THEN round(100 * (m.cur - m.prev) / abs(m.prev), 2) END,
           v_cur_from, p_at, v_prev_from, v_prev_to
    FROM (SELECT * FROM sums WHERE sums.idx = 1) c CROSS JOIN (SELECT * FROM sums WHERE sums.idx = 2) p
    CROSS JOIN LATERAL (VALUES
      (1, 'requests', c.requests::numeric, p.requests::numeric), (2, 'successful', c.successful, p.successful),
      (3, 'failed', c.failed, p.failed), (4, 'cached', c.cached, p.cached), (5, 'cache_hit_pct', c.cache_hit_pct, p.cache_hit_pct),
      (6, 'files', c.files, p.files), (7, 'bytes', c.bytes, p.bytes), (8, 'tokens_in', c.tokens_in, p.tokens_in),
      (9, 'tokens_out', c.tokens_out, p.tokens_out), (10, 'tokens_total', c.tokens_total, p.tokens_total),
      (11, 'cost_usd', c.cost_usd, p.cost_usd), (12, 'potential_cost_usd', c.potential_cost_usd, p.potential_cost_usd),
      (13, 'savings_usd', c.savings_usd, p.savings_usd), (14, 'quantity', c.quantity, p.quantity),
      (15, 'unpriced', c.unpriced, p.unpriced), (16, 'avg_latency_ms', c.avg_latency_ms, p.avg_latency_ms),
      (17, 'p50_latency_ms', c.p50_latency_ms, p.p50_latency_ms), (18, 'p95_latency_ms', c.p95_latency_ms, p.p95_latency_ms),
      (19, 'p99_latency_ms', c.p99_latency_ms, p.p99_latency_ms)) AS m(ord, metric, cur, prev)
    ORDER BY m.ord;
END
$b$$f$, tally._usage_metrics_sql('r'));
END
$do$;
COMMENT ON FUNCTION tally.compare_periods(uuid, text, timestamptz, uuid[], text[], text[], text[], text[], text[]) IS
  'This period so far against the same span of the previous one, in the account''s calendar: current = [start of the local day, ISO week (Monday) or month holding p_at, p_at); previous = [start of the period before, that start + the same elapsed time), capped at the current start. One row per metric of get_usage_series (same names, same order): current_value, previous_value, change, change_pct (NULL when the previous value is 0 or NULL), with both ranges. Exact to the instant: whole local days from the daily rows, whole hours from the hourly rows (their totals when nothing is filtered), the pieces of hours from the raw events (the tail included). Filters as get_usage_series. Errors: invalid_parameter, past_retention (22023); forbidden (42501). Members of the account and service callers.';
