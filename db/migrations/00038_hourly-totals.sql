-- Hourly totals: one row per account and UTC hour, for the questions by hour that filter nothing.
--
-- usage_hourly holds one row per UTC hour and dimension tuple (api key, event type,
-- provider, model, endpoint, file type): exact for any filter, but a question by hour that
-- filters nothing ("requests per hour this week", or the hours of a partial day that
-- compare_periods adds up) sums every tuple of every hour, and a busy account has hundreds
-- of tuples an hour (about 250 an hour for the query bench's largest account at 10,000,000
-- events): there, a 7-day hourly series took longer than scanning its raw events.
-- usage_hourly_totals holds the same metrics per account and hour, whatever the tuple: 168
-- rows for that week.
--
-- It is folded by tally.run_rollups in the same statement as the other grains, from the same
-- pass over the events, so the exactly-once argument is unchanged (one statement, one
-- watermark move). An hourly bucket is rebuilt (void_events, recompute_rollups, reprice)
-- with its totals, tally.verify_rollups checks them metric by metric (grain hourly_totals),
-- and apply_retention deletes them with the hourly rows (retention.hourly). An existing
-- installation gets them from its usage_hourly rows, which sum to them exactly.

-- The rollups' lock first: a run_rollups that started before this migration and reached
-- its lock after it would otherwise fold with the new fold but the old list of grains, and
-- leave its window out of the totals.
SELECT pg_advisory_xact_lock(hashtext('tally.run_rollups'));

-- ---------------------------------------------------------------------------------------
-- The table: every metric column of usage_hourly, keyed by (account, bucket)
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
  v_columns text;
BEGIN
  SELECT string_agg(CASE m.combine
           WHEN 'sum' THEN format('%I %s NOT NULL', m.name, m.sql_type)
           WHEN 'max' THEN format('%I %s', m.name, m.sql_type)
           ELSE format('%1$I bigint[] NOT NULL CHECK (cardinality(%1$I) = 42)', m.name) END, ', ' ORDER BY m.ord)
  INTO v_columns FROM tally._rollup_metrics() m;
  EXECUTE format($t$
    CREATE TABLE tally.usage_hourly_totals (
      account_id uuid NOT NULL,
      bucket timestamptz NOT NULL,
      %s,
      CONSTRAINT usage_hourly_totals_pkey PRIMARY KEY (account_id, bucket)
    ) WITH (fillfactor = 90)$t$, v_columns);
END
$$;
ALTER TABLE tally.usage_hourly_totals ALTER COLUMN unpriced SET DEFAULT 0;
ALTER TABLE tally.usage_hourly_totals ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.usage_hourly_totals FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.usage_hourly_totals TO authenticated, service_role;
CREATE POLICY usage_hourly_totals_member_read ON tally.usage_hourly_totals FOR SELECT TO authenticated
  USING (account_id = ANY ((SELECT tally._my_account_ids())::uuid[]));
CREATE POLICY usage_hourly_totals_service_read ON tally.usage_hourly_totals FOR SELECT TO service_role USING (true);
COMMENT ON TABLE tally.usage_hourly_totals IS
  'Usage per account and UTC hour (bucket), whatever the dimension tuple: the metrics of usage_hourly, equal to the sum of the hour''s usage_hourly rows. For questions by hour that filter nothing. Written only by tally.run_rollups and the corrections; kept for retention.hourly; members read their accounts'' rows.';
COMMENT ON COLUMN tally.usage_hourly_totals.bucket IS 'The UTC hour (its start).';
COMMENT ON POLICY usage_hourly_totals_member_read ON tally.usage_hourly_totals IS 'Members read the rows of their accounts.';
COMMENT ON POLICY usage_hourly_totals_service_read ON tally.usage_hourly_totals IS 'service_role reads every row.';

-- ---------------------------------------------------------------------------------------
-- The fold writes them from its pass over the events
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION tally._fold_rollups(p_source text, p_lo bigint, p_hi bigint, p_grains text[],
    p_range_accounts uuid[] DEFAULT NULL, p_range_from timestamptz[] DEFAULT NULL,
    p_range_to timestamptz[] DEFAULT NULL, p_range_buckets text[] DEFAULT NULL)
  RETURNS bigint
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  SET jit = off
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  SET work_mem = '32MB'
  SET enable_sort = off
  SET enable_incremental_sort = off
  AS $fn$
DECLARE
  v_tuple     constant text := 'b.api_key_id, b.event_type, b.provider, b.model, b.endpoint, b.file_type';
  v_from      text;
  v_where     text;
  v_columns   text;  -- the event columns the metrics read
  v_base      text;  -- the pass over the events: each metric's group value (histograms: 42 slot counts)
  v_insert    text;  -- a grain's metric column list
  v_select    text;  -- a grain row from groups of pass rows b
  v_pass      text;  -- a pass row from groups of pass rows b (histograms stay 42 columns)
  v_direct    text;  -- a grain row from one pass row b
  v_merge     text;  -- on conflict: the stored row combined with the new one
  v_dims      text;  -- the day rows grouped by each tuple dimension's value, one SELECT per dimension
  v_ctes      text := '';
  v_unknown   text;
  v_events    bigint;
BEGIN
  PERFORM set_config('work_mem', tally._setting_int('rollups.work_mem_mb') || 'MB', true);
  SELECT string_agg(g, ', ') INTO v_unknown FROM unnest(p_grains) g
  WHERE g NOT IN ('hourly', 'hourly_totals', 'daily', 'monthly', 'daily_by_dimension', 'monthly_by_dimension');
  IF v_unknown IS NOT NULL OR coalesce(cardinality(p_grains), 0) = 0 THEN
    RAISE EXCEPTION 'unknown grain in %', p_grains;
  END IF;

  IF p_source = 'window' THEN
    v_from := 'tally.events e JOIN tally.accounts a ON a.id = e.account_id';
    v_where := 'e.id > $1 AND e.id <= $2';
  ELSIF p_source = 'ranges' THEN
    -- the range finds the candidates; the bucket expression of the fold itself decides,
    -- so a local midnight that happens twice (a DST change at 00:00) cannot disagree.
    -- The grains of one call share that bucket: hourly (+ totals), or daily (+ by dimension), or monthly (+ by dimension).
    SELECT format('e.id <= $2 AND %s = r.bucket::%s', g.event_bucket, g.bucket_type) INTO v_where
    FROM tally._rollup_grains() g
    WHERE g.grain = ALL (SELECT regexp_replace(x, '_(by_dimension|totals)$', '') FROM unnest(p_grains) x);
    IF v_where IS NULL THEN
      RAISE EXCEPTION 'ranges fold grains of one bucket at a time (got %)', p_grains;
    END IF;
    v_from := 'unnest($3, $4, $5, $6) AS r(account_id, range_from, range_to, bucket)'
              ' JOIN tally.events e ON e.account_id = r.account_id AND e.occurred_at >= r.range_from AND e.occurred_at < r.range_to'
              ' JOIN tally.accounts a ON a.id = e.account_id';
  ELSE
    RAISE EXCEPTION 'unknown fold source %', p_source;
  END IF;

  SELECT string_agg(format('e.%I', c), ', ' ORDER BY c) INTO v_columns
  FROM (SELECT DISTINCT unnest(m.columns) AS c FROM tally._rollup_metrics() m) cs;

  SELECT string_agg(CASE m.combine
           WHEN 'histogram' THEN (SELECT string_agg(format('count(*) FILTER (WHERE %s) AS %I', c.cond, m.name || '_h' || (c.k - 1)), ', ' ORDER BY c.k)
                                  FROM unnest(tally._hist_slot_conditions(m.event_value)) WITH ORDINALITY AS c(cond, k))
           ELSE format('%s AS %I', m.group_value, m.name) END, ', ' ORDER BY m.ord),
         string_agg(format('%I', m.name), ', ' ORDER BY m.ord),
         string_agg(CASE
           WHEN m.combine = 'sum' AND m.sql_type = 'bigint' THEN format('tally._sum8(b.%I)', m.name)
           WHEN m.combine = 'sum' THEN format('sum(b.%I)', m.name)
           WHEN m.combine = 'max' THEN format('max(b.%I)', m.name)
           ELSE format('ARRAY[%s]', (SELECT string_agg(format('tally._sum8(b.%I)', m.name || '_h' || k), ', ' ORDER BY k) FROM generate_series(0, 41) k)) END,
           ', ' ORDER BY m.ord),
         string_agg(CASE
           WHEN m.combine = 'sum' AND m.sql_type = 'bigint' THEN format('tally._sum8(b.%1$I) AS %1$I', m.name)
           WHEN m.combine = 'sum' THEN format('sum(b.%1$I)::%2$s AS %1$I', m.name, m.sql_type)
           WHEN m.combine = 'max' THEN format('max(b.%1$I) AS %1$I', m.name)
           ELSE (SELECT string_agg(format('tally._sum8(b.%1$I) AS %1$I', m.name || '_h' || k), ', ' ORDER BY k) FROM generate_series(0, 41) k) END,
           ', ' ORDER BY m.ord),
         string_agg(CASE m.combine
           WHEN 'histogram' THEN format('ARRAY[%s]', (SELECT string_agg(format('b.%I', m.name || '_h' || k), ', ' ORDER BY k) FROM generate_series(0, 41) k))
           ELSE format('b.%I', m.name) END,
           ', ' ORDER BY m.ord),
         string_agg(CASE m.combine
           WHEN 'sum' THEN format('%1$I = u.%1$I + excluded.%1$I', m.name)
           WHEN 'max' THEN format('%1$I = greatest(u.%1$I, excluded.%1$I)', m.name)
           -- rows are written only by the fold: 1-based, 42 slots
           ELSE format('%1$I = ARRAY[%2$s]', m.name,
                       (SELECT string_agg(format('u.%1$I[%2$s] + excluded.%1$I[%2$s]', m.name, k), ', ' ORDER BY k) FROM generate_series(1, 42) k)) END,
           ', ' ORDER BY m.ord)
  INTO v_base, v_insert, v_select, v_pass, v_direct, v_merge
  FROM tally._rollup_metrics() m;
  -- one aggregation per dimension: each holds only that dimension's groups, so it spills
  -- far less than one aggregation over every dimension's groups at once (same rows)
  SELECT string_agg(format('SELECT b.account_id, b.local_day, %1$L::text AS dimension, %2$s AS value, %%1$s'
                           ' FROM day_rows b GROUP BY b.account_id, b.local_day, %2$s', d.dimension, d.value_sql),
                    ' UNION ALL ' ORDER BY d.ord) INTO v_dims
  FROM tally._rollup_dimensions() d WHERE d.dimension <> 'status_class';

  IF 'hourly' = ANY (p_grains) THEN
    -- The pass holds one row per hour, local day, tuple and status class. Most hourly rows
    -- are one pass row as it is; the others (events of several status classes, or an hour
    -- that straddles local midnight in a zone whose offset is not a whole number of hours)
    -- are the sum of their pass rows. Finding those takes a narrow grouping of the keys,
    -- much cheaper than grouping every pass row with its metrics.
    v_ctes := v_ctes || format($u$,
  split_hours AS MATERIALIZED (
    SELECT b.account_id, b.hour_utc, b.dim_key
    FROM base b
    GROUP BY b.account_id, b.hour_utc, b.dim_key
    HAVING count(*) > 1
  ),
  hourly AS (
    INSERT INTO tally.usage_hourly AS u (account_id, bucket, dim_key, api_key_id, event_type, provider, model, endpoint, file_type, %1$s)
    SELECT b.account_id, b.hour_utc, b.dim_key, %2$s, %5$s
    FROM base b
    WHERE NOT EXISTS (SELECT 1 FROM split_hours s WHERE s.account_id = b.account_id AND s.hour_utc = b.hour_utc AND s.dim_key = b.dim_key)
    UNION ALL
    SELECT b.account_id, b.hour_utc, b.dim_key, %2$s, %3$s
    FROM base b
    JOIN split_hours s ON s.account_id = b.account_id AND s.hour_utc = b.hour_utc AND s.dim_key = b.dim_key
    GROUP BY b.account_id, b.hour_utc, b.dim_key, %2$s
    ON CONFLICT (account_id, bucket, dim_key) DO UPDATE SET %4$s
    RETURNING 1
  )$u$, v_insert, v_tuple, v_select, v_merge, v_direct);
  END IF;
  IF 'hourly_totals' = ANY (p_grains) THEN
    -- one row per account and UTC hour: the pass rows of the hour, whatever their tuple
    v_ctes := v_ctes || format($u$,
  hourly_totals AS (
    INSERT INTO tally.usage_hourly_totals AS u (account_id, bucket, %1$s)
    SELECT b.account_id, b.hour_utc, %2$s
    FROM base b
    GROUP BY b.account_id, b.hour_utc
    ON CONFLICT (account_id, bucket) DO UPDATE SET %3$s
    RETURNING 1
  )$u$, v_insert, v_select, v_merge);
  END IF;
  IF p_grains && ARRAY['daily', 'monthly', 'daily_by_dimension', 'monthly_by_dimension'] THEN
    v_ctes := v_ctes || format($u$,
  day_rows AS MATERIALIZED (
    -- the pass per local day: one row per daily row, what monthly and the dimensions fold from
    SELECT b.account_id, b.local_day, b.dim_key, %1$s, %2$s
    FROM base b
    GROUP BY b.account_id, b.local_day, b.dim_key, %1$s
  )$u$, v_tuple, v_pass);
  END IF;
  IF 'daily' = ANY (p_grains) THEN
    v_ctes := v_ctes || format($u$,
  daily AS (
    INSERT INTO tally.usage_daily AS u (account_id, bucket, dim_key, api_key_id, event_type, provider, model, endpoint, file_type, %1$s)
    SELECT b.account_id, b.local_day, b.dim_key, %2$s, %3$s
    FROM day_rows b
    ON CONFLICT (account_id, bucket, dim_key) DO UPDATE SET %4$s
    RETURNING 1
  )$u$, v_insert, v_tuple, v_direct, v_merge);
  END IF;
  IF 'monthly' = ANY (p_grains) THEN
    v_ctes := v_ctes || format($u$,
  monthly AS (
    INSERT INTO tally.usage_monthly AS u (account_id, bucket, dim_key, api_key_id, event_type, provider, model, endpoint, file_type, %1$s)
    SELECT b.account_id, date_trunc('month', b.local_day)::date, b.dim_key, %2$s, %3$s
    FROM day_rows b
    GROUP BY b.account_id, date_trunc('month', b.local_day)::date, b.dim_key, %2$s
    ON CONFLICT (account_id, bucket, dim_key) DO UPDATE SET %4$s
    RETURNING 1
  )$u$, v_insert, v_tuple, v_select, v_merge);
  END IF;
  IF p_grains && ARRAY['daily_by_dimension', 'monthly_by_dimension'] THEN
    -- the status class is not in the tuple (the stored rows), but it is in the pass: its
    -- rows are the pass rows grouped by class, with no second reading of the events
    v_ctes := v_ctes || format($u$,
  day_dims AS MATERIALIZED (
    -- the day rows by the value of each tuple dimension in turn; and the status classes
    %1$s
    UNION ALL
    SELECT b.account_id, b.local_day, 'status_class', b.status_class, %2$s
    FROM base b
    GROUP BY b.account_id, b.local_day, b.status_class
  )$u$, format(v_dims, v_pass), v_pass);
  END IF;
  IF 'daily_by_dimension' = ANY (p_grains) THEN
    v_ctes := v_ctes || format($u$,
  daily_dims AS (
    INSERT INTO tally.usage_daily_by_dimension AS u (account_id, bucket, dimension, value, %1$s)
    SELECT b.account_id, b.local_day, b.dimension, b.value, %2$s
    FROM day_dims b
    ON CONFLICT (account_id, bucket, dimension, value) DO UPDATE SET %3$s
    RETURNING 1
  )$u$, v_insert, v_direct, v_merge);
  END IF;
  IF 'monthly_by_dimension' = ANY (p_grains) THEN
    v_ctes := v_ctes || format($u$,
  monthly_dims AS (
    INSERT INTO tally.usage_monthly_by_dimension AS u (account_id, bucket, dimension, value, %1$s)
    SELECT b.account_id, date_trunc('month', b.local_day)::date, b.dimension, b.value, %2$s
    FROM day_dims b
    GROUP BY b.account_id, date_trunc('month', b.local_day)::date, b.dimension, b.value
    ON CONFLICT (account_id, bucket, dimension, value) DO UPDATE SET %3$s
    RETURNING 1
  )$u$, v_insert, v_select, v_merge);
  END IF;

  EXECUTE format($q$
  WITH window_events AS NOT MATERIALIZED (
    -- the events to fold, with their account's time zone and status class
    SELECT e.account_id, e.occurred_at, a.timezone, e.api_key_id, e.event_type, e.provider, e.model, e.endpoint,
           e.file_type, %4$s AS status_class, %3$s
    FROM %1$s
    WHERE %2$s
      AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
  ),
  base AS MATERIALIZED (
    -- one pass over the events: partial sums and histogram per UTC hour x local day x
    -- dimension tuple x status class (an hour can straddle two local days in zones with
    -- :30 or :45 offsets); the tuple key is computed per group, not per event
    SELECT e.account_id, e.timezone,
           date_trunc('hour', e.occurred_at) AS hour_utc,  -- TimeZone is UTC here (SET above)
           (e.occurred_at AT TIME ZONE e.timezone)::date AS local_day,
           %5$s AS dim_key,
           e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type, e.status_class,
           %6$s
    FROM window_events e
    GROUP BY e.account_id, e.timezone, 3, 4, e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type, e.status_class
  )%7$s
  SELECT coalesce(sum(b.requests), 0) FROM base b$q$,
    v_from, v_where, v_columns, tally._status_class_sql('e'), tally._dim_key_sql('e'), v_base, v_ctes)
  INTO v_events
  USING p_lo, p_hi, p_range_accounts, p_range_from, p_range_to, p_range_buckets;
  RETURN v_events;
END
$fn$;
COMMENT ON FUNCTION tally._fold_rollups(text, bigint, bigint, text[], uuid[], timestamptz[], timestamptz[], text[]) IS
  'Folds events into the given grains (hourly, hourly_totals, daily, monthly, daily_by_dimension, monthly_by_dimension) with additive upserts and returns how many: the id window (p_lo, p_hi] for source window, or, for source ranges (grains of one bucket: hourly with or without hourly_totals, or daily with or without daily_by_dimension, or monthly likewise), the events with id <= p_hi in the given (account, from, to, bucket) rows whose bucket is that bucket. Voided events are skipped. The statement is generated from tally._rollup_metrics(), tally._rollup_grains() and tally._rollup_dimensions().';
REVOKE ALL ON FUNCTION tally._fold_rollups(text, bigint, bigint, text[], uuid[], timestamptz[], timestamptz[], text[]) FROM PUBLIC, anon, authenticated, service_role;

-- run_rollups folds them with the other grains (its body names the grains; the rest is unchanged).
DO $$
DECLARE
  v_def text := pg_get_functiondef('tally.run_rollups(bigint)'::regprocedure);
  v_old constant text := '''{hourly,daily,monthly,daily_by_dimension,monthly_by_dimension}''';
BEGIN
  IF position(v_old IN v_def) = 0 THEN
    RAISE EXCEPTION 'run_rollups does not fold the five grains as expected';
  END IF;
  EXECUTE replace(v_def, v_old, '''{hourly,hourly_totals,daily,monthly,daily_by_dimension,monthly_by_dimension}''');
END
$$;
COMMENT ON FUNCTION tally.run_rollups(bigint) IS
  'Folds the events committed since the watermark (at most p_max_events ids, default setting rollups.chunk_events) into usage_hourly, usage_hourly_totals, usage_daily, usage_monthly, usage_daily_by_dimension and usage_monthly_by_dimension and moves the watermark, in the caller''s transaction: exactly once even when killed, re-run or started twice (the second call returns {skipped: true}). Waits for transactions still inserting into its window, up to setting rollups.max_wait, else returns {waiting_for_pids}. Returns {events, watermark, more}; more = true means call again. Needs READ COMMITTED. Service callers only.';

-- ---------------------------------------------------------------------------------------
-- Corrections rebuild an hourly bucket with its totals
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
  v_def text := pg_get_functiondef('tally._rebuild_rollups(text[], uuid[], text[])'::regprocedure);
  v_tables_old constant text := $o$CASE v_grain WHEN 'hourly' THEN ARRAY['usage_hourly']$o$;
  v_grains_old constant text := $o$CASE v_grain WHEN 'hourly' THEN ARRAY['hourly'] ELSE$o$;
BEGIN
  IF position(v_tables_old IN v_def) = 0 OR position(v_grains_old IN v_def) = 0 THEN
    RAISE EXCEPTION '_rebuild_rollups does not name the hourly tables and grains as expected';
  END IF;
  v_def := replace(v_def, v_tables_old, $n$CASE v_grain WHEN 'hourly' THEN ARRAY['usage_hourly', 'usage_hourly_totals']$n$);
  v_def := replace(v_def, v_grains_old, $n$CASE v_grain WHEN 'hourly' THEN ARRAY['hourly', 'hourly_totals'] ELSE$n$);
  v_def := replace(v_def, '-- a daily or monthly bucket''s dimension rows hold the same events: rebuilt with it',
                   '-- an hourly bucket''s totals, and a daily or monthly bucket''s dimension rows, hold the same events: rebuilt with it');
  EXECUTE v_def;
END
$$;
COMMENT ON FUNCTION tally._rebuild_rollups(text[], uuid[], text[]) IS
  'Deletes the aggregate rows of the given buckets (parallel arrays grain, account_id, bucket text; an hourly bucket with its totals, a daily or monthly bucket with its rows by dimension) and folds their events again (id <= watermark, not voided). Refuses (past_retention) a bucket starting before the raw events'' retention cutoff that the fold would recreate, since some of its events may be gone. Returns {hourly, daily, monthly} bucket counts. Callers hold the rollups'' lock.';

-- recompute_rollups also rebuilds an hour that holds only a totals row (a bug's leftovers).
DO $$
DECLARE
  v_def text := pg_get_functiondef('tally.recompute_rollups(timestamptz, timestamptz)'::regprocedure);
  v_old constant text := $o$    SELECT 'hourly' AS grain, u.account_id, u.bucket::text AS bucket FROM tally.usage_hourly u
    WHERE u.bucket >= date_trunc('hour', p_from, 'UTC') AND u.bucket < p_to
$o$;
BEGIN
  IF position(v_old IN v_def) = 0 THEN
    RAISE EXCEPTION 'recompute_rollups does not list its stored hourly buckets as expected';
  END IF;
  EXECUTE replace(v_def, v_old, v_old || $n$    UNION
    SELECT 'hourly', u.account_id, u.bucket::text FROM tally.usage_hourly_totals u
    WHERE u.bucket >= date_trunc('hour', p_from, 'UTC') AND u.bucket < p_to
$n$);
END
$$;

-- ---------------------------------------------------------------------------------------
-- Retention: the totals go with the hourly rows
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
  v_def text := pg_get_functiondef('tally.apply_retention()'::regprocedure);
  v_old constant text := $o$  DELETE FROM tally.usage_hourly u WHERE u.bucket < tally._retention_floor('hourly');
  GET DIAGNOSTICS v_hourly = ROW_COUNT;
$o$;
BEGIN
  IF position(v_old IN v_def) = 0 THEN
    RAISE EXCEPTION 'apply_retention does not delete hourly rows as expected';
  END IF;
  EXECUTE replace(v_def, v_old, v_old || $n$  DELETE FROM tally.usage_hourly_totals u WHERE u.bucket < tally._retention_floor('hourly');
$n$);
END
$$;
COMMENT ON FUNCTION tally.apply_retention() IS
  'Applies the retention.* settings: drops the monthly events partitions that lie wholly before retention.events (never one holding events the rollups have not folded; it is kept and reported), with their voids; deletes hourly rows (hourly totals with them), daily rows (daily rows by dimension with them) and rejected items past their retention. Monthly rows are kept. Run daily by the worker. Returns what it removed (hourly_deleted counts usage_hourly rows, daily_deleted usage_daily rows). Service callers only.';

-- ---------------------------------------------------------------------------------------
-- Verification covers the totals (grain hourly_totals)
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
  v_def text := pg_get_functiondef('tally.verify_rollups(timestamptz, timestamptz)'::regprocedure);
  v_keyed_old constant text := $o$    UNION ALL
    SELECT 'daily', b.account_id, b.local_day::text, b.dim_key, NULL, NULL, %2$s FROM days b
$o$;
  v_actual_old constant text := $o$    UNION ALL
    SELECT 'daily', u.account_id, u.bucket::text, u.dim_key, NULL, NULL, %4$s
$o$;
BEGIN
  IF position(v_keyed_old IN v_def) = 0 OR position(v_actual_old IN v_def) = 0 THEN
    RAISE EXCEPTION 'verify_rollups does not list its grains as expected';
  END IF;
  v_def := replace(v_def, v_keyed_old, $n$    UNION ALL
    SELECT 'hourly_totals', b.account_id, b.hour_utc::text, NULL, NULL, NULL, %2$s
    FROM folded b
    WHERE b.hour_utc >= date_trunc('hour', $1, 'UTC') AND b.hour_utc < $2 AND b.hour_utc >= tally._retention_floor('hourly')
$n$ || v_keyed_old);
  v_def := replace(v_def, v_actual_old, $n$    UNION ALL
    SELECT 'hourly_totals', u.account_id, u.bucket::text, NULL, NULL, NULL, %4$s
    FROM tally.usage_hourly_totals u
    WHERE u.bucket >= date_trunc('hour', $1, 'UTC') AND u.bucket < $2 AND u.bucket >= tally._retention_floor('hourly')
$n$ || v_actual_old);
  EXECUTE v_def;
END
$$;
COMMENT ON FUNCTION tally.verify_rollups(timestamptz, timestamptz) IS
  'Compares every hourly, daily and monthly bucket that overlaps [p_from, p_to) (at most 400 days), its hourly totals and its rows by dimension, with the folded raw events (id <= watermark), metric by metric (every metric of tally._rollup_metrics(); hourly and daily buckets past their retention are skipped). Refuses a range starting before the retention of raw events (past_retention, 22023). Returns one row per bucket and dimension tuple (grains hourly, daily, monthly: dim_key), per hour (grain hourly_totals) or per dimension value (grains daily_by_dimension, monthly_by_dimension: dimension, value) that differs (expected from events, actual stored; NULL when missing); no rows = consistent. A mismatch is repaired with tally.recompute_rollups over the same range. Service callers only.';

-- ---------------------------------------------------------------------------------------
-- Adding a metric later adds it to the totals too
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
  v_def text := pg_get_functiondef('tally._apply_rollup_metrics()'::regprocedure);
  v_old constant text := $o$ARRAY['usage_hourly', 'usage_daily',$o$;
BEGIN
  IF position(v_old IN v_def) = 0 THEN
    RAISE EXCEPTION '_apply_rollup_metrics does not list its tables as expected';
  END IF;
  EXECUTE replace(v_def, v_old, $n$ARRAY['usage_hourly', 'usage_hourly_totals', 'usage_daily',$n$);
END
$$;
COMMENT ON FUNCTION tally._apply_rollup_metrics() IS
  'Migration helper: adds the columns of new sum metrics of tally._rollup_metrics() to usage_hourly/daily/monthly, the hourly totals and the tables by dimension (NOT NULL DEFAULT 0) and regenerates the three *_live views from the lists.';

DO $$
DECLARE
  v_def text := pg_get_functiondef('tally._backfill_rollup_metric(text)'::regprocedure);
  v_old constant text := $o$    CONTINUE WHEN v_g.grain = 'hourly';
$o$;
BEGIN
  IF position(v_old IN v_def) = 0 THEN
    RAISE EXCEPTION '_backfill_rollup_metric does not skip the hourly grain as expected';
  END IF;
  EXECUTE replace(v_def, v_old, $n$    IF v_g.grain = 'hourly' THEN
      -- the same metric per account and hour
      EXECUTE format($t$
        UPDATE tally.usage_hourly_totals u SET %1$I = s.v
        FROM (
          SELECT e.account_id, %2$s AS bucket, %3$s AS v
          FROM tally.events e JOIN tally.accounts a ON a.id = e.account_id
          WHERE e.id <= (SELECT s.watermark FROM tally.rollup_state s)
            AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
          GROUP BY 1, 2
        ) s
        WHERE u.account_id = s.account_id AND u.bucket = s.bucket AND u.%1$I IS DISTINCT FROM s.v$t$,
        v_m.name, v_g.event_bucket, v_m.group_value);
      GET DIAGNOSTICS v_n = ROW_COUNT;
      v_counts := v_counts || jsonb_build_object('hourly_totals', v_n);
    END IF;
$n$ || v_old);
END
$$;
COMMENT ON FUNCTION tally._backfill_rollup_metric(text) IS
  'Migration helper: sets a new sum metric of every stored usage_hourly/daily/monthly row, of the hourly totals and of the rows by dimension, from the folded raw events (id <= watermark, not voided) and returns the rows changed per grain; rows whose raw events are past retention keep the default.';

-- The settings name what they keep.
UPDATE tally.settings SET description = 'How long tally.usage_hourly and tally.usage_hourly_totals rows are kept.'
WHERE name = 'retention.hourly';
UPDATE tally.settings SET description = 'How long tally.usage_daily and tally.usage_daily_by_dimension rows are kept. Monthly rows are kept forever.'
WHERE name = 'retention.daily';

-- ---------------------------------------------------------------------------------------
-- Existing installations: the totals of the hourly rows already folded
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
  v_names text;
  v_sums  text;
BEGIN
  SELECT string_agg(format('%I', m.name), ', ' ORDER BY m.ord),
         string_agg(CASE m.combine
           WHEN 'sum' THEN format('sum(u.%1$I)::%2$s', m.name, m.sql_type)
           WHEN 'max' THEN format('max(u.%I)', m.name)
           ELSE format('ARRAY[%s]', (SELECT string_agg(format('sum(u.%I[%s])::bigint', m.name, k), ', ' ORDER BY k) FROM generate_series(1, 42) k)) END,
           ', ' ORDER BY m.ord)
  INTO v_names, v_sums FROM tally._rollup_metrics() m;
  EXECUTE format('INSERT INTO tally.usage_hourly_totals (account_id, bucket, %s) SELECT u.account_id, u.bucket, %s FROM tally.usage_hourly u GROUP BY u.account_id, u.bucket',
                 v_names, v_sums);
END
$$;

-- ---------------------------------------------------------------------------------------
-- Reads: a question by hour that filters and groups nothing reads the totals
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
  v_def text := pg_get_functiondef('tally._usage_by(uuid, text, timestamptz[], timestamptz[], date, date, text[], uuid[], text[], text[], text[], text[], text[], date)'::regprocedure);
  v_old constant text := $o$    v_stored_from := 'unnest($3, $4) AS r(lo, hi) JOIN tally.usage_hourly u ON u.account_id = $1 AND u.bucket >= r.lo AND u.bucket < r.hi';$o$;
BEGIN
  IF position(v_old IN v_def) = 0 THEN
    RAISE EXCEPTION '_usage_by does not read the hourly rows as expected';
  END IF;
  EXECUTE replace(v_def, v_old, $n$    -- with no filter and no grouping, one row per hour: the totals
    v_stored_from := format('unnest($3, $4) AS r(lo, hi) JOIN tally.%I u ON u.account_id = $1 AND u.bucket >= r.lo AND u.bucket < r.hi',
                            CASE WHEN v_nfilters = 0 AND p_groups IS NULL THEN 'usage_hourly_totals' ELSE 'usage_hourly' END);$n$);
END
$$;
COMMENT ON FUNCTION tally._usage_by(uuid, text, timestamptz[], timestamptz[], date, date, text[], uuid[], text[], text[], text[], text[], text[], date) IS
  'The usage of one account as raw sums (and a 42-slot latency histogram) per bucket and, if p_groups names dimensions, per dimension and value: the stored aggregates plus the unfolded tail. p_unit hour: the UTC hours in the ranges [p_hours_lo[i], p_hours_hi[i]); day, week (ISO, by its Monday), none (one row for the range; with p_split, two: day p_from_day for the days before p_split, day p_split for the rest): local days p_from_day..p_to_day; month: local months starting p_from_day..p_to_day. Filters are ANDed lists (NULL: none). Reads the hourly totals for hours with no filter and no grouping, the rows by dimension when they can answer, else the rows per tuple. Callers check access and arguments first.';
