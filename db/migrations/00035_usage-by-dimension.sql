-- Per-dimension aggregates for the dashboard questions.
--
-- usage_daily and usage_monthly hold one row per bucket and dimension tuple (api key,
-- event type, provider, model, endpoint, file type): exact for any filter, but a dashboard
-- that asks "requests per day" or "which providers" sums every tuple of every day, and a
-- busy account has hundreds of tuples a day. The two tables added here hold, per local day
-- and per local month, one row per value of ONE dimension: the event type, the API key,
-- the provider, the model, the endpoint, the file type, and the status class of the HTTP
-- status code (which is not part of the tuple). Each event counts once in every dimension,
-- so the rows of any one dimension of a bucket sum to the bucket's totals: a month of
-- totals is a month of event-type rows (a handful a day), and a provider breakdown is the
-- provider rows.
--
-- They are folded by tally.run_rollups in the same statement as the other grains, so the
-- exactly-once argument is unchanged (one statement, one watermark move). Corrections
-- (void_events, recompute_rollups, reprice) rebuild them with the daily and monthly
-- buckets they belong to, tally.verify_rollups checks them metric by metric, and
-- apply_retention drops the daily ones with retention.daily. The fold also computes the
-- tuple key inline rather than through a function call per group.

-- ---------------------------------------------------------------------------------------
-- The dimensions
-- ---------------------------------------------------------------------------------------

-- value_sql reads a row `b` with the tuple columns and status_class.
CREATE FUNCTION tally._rollup_dimensions()
  RETURNS TABLE (ord integer, dimension text, value_sql text)
  LANGUAGE sql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
    select * from (values
      (1, 'event_type', 'b.event_type'),
      (2, 'api_key', 'b.api_key_id::text'),
      (3, 'provider', 'b.provider'),
      (4, 'model', 'b.model'),
      (5, 'endpoint', 'b.endpoint'),
      (6, 'file_type', 'b.file_type'),
      (7, 'status_class', 'b.status_class')
    ) as d(ord, dimension, value_sql)
  $$;
COMMENT ON FUNCTION tally._rollup_dimensions() IS
  'The dimensions of usage_daily_by_dimension and usage_monthly_by_dimension, with the expression of a row b (tuple columns plus status_class) giving its value as text.';
REVOKE ALL ON FUNCTION tally._rollup_dimensions() FROM PUBLIC, anon, authenticated, service_role;

-- The status class of a status code as an expression over p_alias: 1xx..5xx, NULL without one.
CREATE FUNCTION tally._status_class_sql(p_alias text) RETURNS text
  LANGUAGE sql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$ select format('((%1$I.status_code / 100)::text || ''xx'')', p_alias) $$;
COMMENT ON FUNCTION tally._status_class_sql(text) IS
  'The status class (1xx..5xx; NULL when there is no status code) of the status_code column of the given alias, as SQL text.';
REVOKE ALL ON FUNCTION tally._status_class_sql(text) FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- The tables: every metric column of usage_daily, keyed by (account, bucket, dimension, value)
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
  v_table   text;
  v_columns text;
BEGIN
  SELECT string_agg(CASE m.combine
           WHEN 'sum' THEN format('%I %s NOT NULL', m.name, m.sql_type)
           WHEN 'max' THEN format('%I %s', m.name, m.sql_type)
           ELSE format('%1$I bigint[] NOT NULL CHECK (cardinality(%1$I) = 42)', m.name) END, ', ' ORDER BY m.ord)
  INTO v_columns FROM tally._rollup_metrics() m;
  FOREACH v_table IN ARRAY ARRAY['usage_daily_by_dimension', 'usage_monthly_by_dimension'] LOOP
    EXECUTE format($t$
      CREATE TABLE tally.%1$I (
        account_id uuid NOT NULL,
        bucket date NOT NULL,
        dimension text NOT NULL CHECK (dimension IN ('event_type', 'api_key', 'provider', 'model', 'endpoint', 'file_type', 'status_class')),
        value text,
        %2$s,
        CONSTRAINT %3$I UNIQUE NULLS NOT DISTINCT (account_id, bucket, dimension, value)
      )$t$, v_table, v_columns, v_table || '_key');
    EXECUTE format('ALTER TABLE tally.%I ENABLE ROW LEVEL SECURITY', v_table);
    EXECUTE format('REVOKE ALL ON TABLE tally.%I FROM PUBLIC, anon, authenticated, service_role', v_table);
    EXECUTE format('GRANT SELECT ON TABLE tally.%I TO authenticated, service_role', v_table);
    EXECUTE format('CREATE POLICY %I ON tally.%I FOR SELECT TO authenticated USING (account_id = ANY ((SELECT tally._my_account_ids())::uuid[]))',
                   v_table || '_member_read', v_table);
    EXECUTE format('CREATE POLICY %I ON tally.%I FOR SELECT TO service_role USING (true)', v_table || '_service_read', v_table);
  END LOOP;
END
$$;
ALTER TABLE tally.usage_daily_by_dimension ALTER COLUMN unpriced SET DEFAULT 0;
ALTER TABLE tally.usage_monthly_by_dimension ALTER COLUMN unpriced SET DEFAULT 0;

-- Every run updates the rows of the current hour, day and month in place (and a backfill
-- updates rows anywhere): leave a tenth of each page free so those updates stay on their
-- page (HOT: no new index entries, since no indexed column changes). Applies to pages
-- written from now on.
ALTER TABLE tally.usage_hourly SET (fillfactor = 90);
ALTER TABLE tally.usage_daily SET (fillfactor = 90);
ALTER TABLE tally.usage_monthly SET (fillfactor = 90);
ALTER TABLE tally.usage_daily_by_dimension SET (fillfactor = 90);
ALTER TABLE tally.usage_monthly_by_dimension SET (fillfactor = 90);

COMMENT ON TABLE tally.usage_daily_by_dimension IS
  'Usage per local day of the account (bucket) and value of one dimension (event_type, api_key, provider, model, endpoint, file_type, status_class; value NULL = absent): the metrics of usage_daily. Each event counts once per dimension, so the rows of one dimension of a day sum to the day''s totals. Written only by tally.run_rollups and the corrections; kept for retention.daily; members read their accounts'' rows.';
COMMENT ON TABLE tally.usage_monthly_by_dimension IS
  'Usage per local month of the account (bucket = its first day) and value of one dimension, as tally.usage_daily_by_dimension. Kept forever, like usage_monthly.';
COMMENT ON COLUMN tally.usage_daily_by_dimension.dimension IS
  'event_type, api_key, provider, model, endpoint, file_type or status_class (the class of status_code: 1xx..5xx).';
COMMENT ON COLUMN tally.usage_daily_by_dimension.value IS
  'The value of the dimension as text (api_key: the key id; status_class: 2xx etc.); NULL for events without one.';
COMMENT ON COLUMN tally.usage_monthly_by_dimension.dimension IS
  'event_type, api_key, provider, model, endpoint, file_type or status_class (the class of status_code: 1xx..5xx).';
COMMENT ON COLUMN tally.usage_monthly_by_dimension.value IS
  'The value of the dimension as text (api_key: the key id; status_class: 2xx etc.); NULL for events without one.';

-- A sum of counts whose running total is a plain bigint (pg_catalog.int8pl, by value): the
-- fold's second-level sums (per local day, per dimension value, per month) add up counts
-- and histogram slots of many groups at once, and sum(bigint) would keep a 128-bit state
-- per group and per column in memory, about three times as much. Counts never reach 2^63.
CREATE AGGREGATE tally._sum8(bigint) (SFUNC = pg_catalog.int8pl, STYPE = bigint, INITCOND = '0');
COMMENT ON AGGREGATE tally._sum8(bigint) IS
  'Sum of bigint counts with a by-value bigint state (int8pl): for the fold''s additions of counts and histogram slots.';
REVOKE ALL ON FUNCTION tally._sum8(bigint) FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- The fold: the per-hour pass over the events, then per local day, then the grains
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
  WHERE g NOT IN ('hourly', 'daily', 'monthly', 'daily_by_dimension', 'monthly_by_dimension');
  IF v_unknown IS NOT NULL OR coalesce(cardinality(p_grains), 0) = 0 THEN
    RAISE EXCEPTION 'unknown grain in %', p_grains;
  END IF;

  IF p_source = 'window' THEN
    v_from := 'tally.events e JOIN tally.accounts a ON a.id = e.account_id';
    v_where := 'e.id > $1 AND e.id <= $2';
  ELSIF p_source = 'ranges' THEN
    -- the range finds the candidates; the bucket expression of the fold itself decides,
    -- so a local midnight that happens twice (a DST change at 00:00) cannot disagree.
    -- The grains of one call share that bucket: hourly, or daily (+ by dimension), or monthly (+ by dimension).
    SELECT format('e.id <= $2 AND %s = r.bucket::%s', g.event_bucket, g.bucket_type) INTO v_where
    FROM tally._rollup_grains() g
    WHERE g.grain = ALL (SELECT regexp_replace(x, '_by_dimension$', '') FROM unnest(p_grains) x);
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
    -- An hour lies within one local day of its account unless the zone's offset is not a
    -- whole number of hours and the hour straddles local midnight: then the pass holds two
    -- rows for it (one per local day) and they are added up; every other pass row is an
    -- hourly row as it is, with no second aggregation.
    v_ctes := v_ctes || format($u$,
  hourly AS (
    INSERT INTO tally.usage_hourly AS u (account_id, bucket, dim_key, api_key_id, event_type, provider, model, endpoint, file_type, %1$s)
    SELECT b.account_id, b.hour_utc, b.dim_key, %2$s, %5$s
    FROM base b
    WHERE (b.hour_utc AT TIME ZONE b.timezone)::date = ((b.hour_utc + interval '59:59.999999') AT TIME ZONE b.timezone)::date
    UNION ALL
    SELECT b.account_id, b.hour_utc, b.dim_key, %2$s, %3$s
    FROM base b
    WHERE (b.hour_utc AT TIME ZONE b.timezone)::date <> ((b.hour_utc + interval '59:59.999999') AT TIME ZONE b.timezone)::date
    GROUP BY b.account_id, b.hour_utc, b.dim_key, %2$s
    ON CONFLICT (account_id, bucket, dim_key) DO UPDATE SET %4$s
    RETURNING 1
  )$u$, v_insert, v_tuple, v_select, v_merge, v_direct);
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
    -- the status class is not in the tuple: its rows come from a pass of their own over the
    -- events (few groups: account x local day x class), so the tuple pass stays as narrow
    v_ctes := v_ctes || format($u$,
  day_dims AS MATERIALIZED (
    -- the day rows by the value of each tuple dimension in turn; and the status classes
    %1$s
    UNION ALL
    SELECT e.account_id, (e.occurred_at AT TIME ZONE e.timezone)::date, 'status_class', e.status_class, %3$s
    FROM window_events e
    GROUP BY e.account_id, (e.occurred_at AT TIME ZONE e.timezone)::date, e.status_class
  )$u$, format(v_dims, v_pass), v_pass, v_base);
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
    -- the events to fold, with their account's time zone (read by the tuple pass and, for
    -- the status classes, by a second pass: reading twice is cheaper than keeping them)
    SELECT e.account_id, e.occurred_at, a.timezone, e.api_key_id, e.event_type, e.provider, e.model, e.endpoint,
           e.file_type, %4$s AS status_class, %3$s
    FROM %1$s
    WHERE %2$s
      AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
  ),
  base AS MATERIALIZED (
    -- one pass over the events: partial sums and histogram per UTC hour x local day x
    -- dimension tuple (an hour can straddle two local days in zones with :30 or :45
    -- offsets); the tuple key is computed per group, not per event
    SELECT e.account_id, e.timezone,
           date_trunc('hour', e.occurred_at) AS hour_utc,  -- TimeZone is UTC here (SET above)
           (e.occurred_at AT TIME ZONE e.timezone)::date AS local_day,
           %5$s AS dim_key,
           e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type,
           %6$s
    FROM window_events e
    GROUP BY e.account_id, e.timezone, 3, 4, e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type
  )%7$s
  SELECT coalesce(sum(b.requests), 0) FROM base b$q$,
    v_from, v_where, v_columns, tally._status_class_sql('e'), tally._dim_key_sql('e'), v_base, v_ctes)
  INTO v_events
  USING p_lo, p_hi, p_range_accounts, p_range_from, p_range_to, p_range_buckets;
  RETURN v_events;
END
$fn$;
COMMENT ON FUNCTION tally._fold_rollups(text, bigint, bigint, text[], uuid[], timestamptz[], timestamptz[], text[]) IS
  'Folds events into the given grains (hourly, daily, monthly, daily_by_dimension, monthly_by_dimension) with additive upserts and returns how many: the id window (p_lo, p_hi] for source window, or, for source ranges (grains of one bucket: hourly, or daily with or without daily_by_dimension, or monthly likewise), the events with id <= p_hi in the given (account, from, to, bucket) rows whose bucket is that bucket. Voided events are skipped. The statement is generated from tally._rollup_metrics(), tally._rollup_grains() and tally._rollup_dimensions().';
REVOKE ALL ON FUNCTION tally._fold_rollups(text, bigint, bigint, text[], uuid[], timestamptz[], timestamptz[], text[]) FROM PUBLIC, anon, authenticated, service_role;

-- run_rollups folds every grain (its body names them; the rest is unchanged).
DO $$
DECLARE
  v_def text := pg_get_functiondef('tally.run_rollups(bigint)'::regprocedure);
BEGIN
  IF position('''{hourly,daily,monthly}''' IN v_def) = 0 THEN
    RAISE EXCEPTION 'run_rollups does not fold the three grains as expected';
  END IF;
  EXECUTE replace(v_def, '''{hourly,daily,monthly}''', '''{hourly,daily,monthly,daily_by_dimension,monthly_by_dimension}''');
END
$$;
COMMENT ON FUNCTION tally.run_rollups(bigint) IS
  'Folds the events committed since the watermark (at most p_max_events ids, default setting rollups.chunk_events) into usage_hourly, usage_daily, usage_monthly, usage_daily_by_dimension and usage_monthly_by_dimension and moves the watermark, in the caller''s transaction: exactly once even when killed, re-run or started twice (the second call returns {skipped: true}). Waits for transactions still inserting into its window, up to setting rollups.max_wait, else returns {waiting_for_pids}. Returns {events, watermark, more}; more = true means call again. Needs READ COMMITTED. Service callers only.';

-- ---------------------------------------------------------------------------------------
-- Corrections rebuild a daily or monthly bucket together with its dimension rows
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION tally._rebuild_rollups(p_grains text[], p_accounts uuid[], p_buckets text[])
  RETURNS jsonb
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
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
  v_refused   text;
  v_table     text;
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

    -- A bucket is rebuilt whole from its raw events, so none may start before the raw
    -- events' retention cutoff: retention drops whole UTC months, and a local day or month
    -- of an account outside UTC can span two; rebuilt from the surviving partition, it would
    -- lose the rest for good. Buckets past their own grain's retention are not recreated by
    -- the fold, so only those that would be are checked. (range_from is widened by a day.)
    SELECT format('%s bucket %s of account %s', v_grain, t.bucket, t.account_id) INTO v_refused
    FROM unnest(v_accounts, v_from, v_keys) AS t(account_id, range_from, bucket)
    WHERE CASE v_grain WHEN 'hourly' THEN t.range_from ELSE t.range_from + interval '1 day' END
          < tally._retention_floor('events')
      AND CASE v_grain WHEN 'hourly' THEN t.range_from ELSE t.range_from + interval '1 day' END
          >= tally._retention_floor(v_grain)
    LIMIT 1;
    IF v_refused IS NOT NULL THEN
      PERFORM tally._raise('past_retention',
        format('the %s starts before %s, where raw events past retention (setting retention.events) may be gone: it cannot be rebuilt from them',
               v_refused, tally._retention_floor('events')));
    END IF;

    -- a daily or monthly bucket's dimension rows hold the same events: rebuilt with it
    FOREACH v_table IN ARRAY CASE v_grain WHEN 'hourly' THEN ARRAY['usage_hourly']
                                          ELSE ARRAY['usage_' || v_grain, 'usage_' || v_grain || '_by_dimension'] END LOOP
      EXECUTE format(
        'DELETE FROM tally.%I u USING unnest($2, $3, $4) AS k(grain, account_id, bucket)
          WHERE k.grain = $1 AND u.account_id = k.account_id AND u.bucket = k.bucket::%s',
        v_table, CASE v_grain WHEN 'hourly' THEN 'timestamptz' ELSE 'date' END)
      USING v_grain, p_grains, p_accounts, p_buckets;
    END LOOP;
    PERFORM tally._fold_rollups('ranges', 0, v_watermark,
      CASE v_grain WHEN 'hourly' THEN ARRAY['hourly'] ELSE ARRAY[v_grain, v_grain || '_by_dimension'] END,
      v_accounts, v_from, v_to, v_keys);
  END LOOP;
  RETURN v_counts;
END
$$;
COMMENT ON FUNCTION tally._rebuild_rollups(text[], uuid[], text[]) IS
  'Deletes the aggregate rows of the given buckets (parallel arrays grain, account_id, bucket text; a daily or monthly bucket with its rows by dimension) and folds their events again (id <= watermark, not voided). Refuses (past_retention) a bucket starting before the raw events'' retention cutoff that the fold would recreate, since some of its events may be gone. Returns {hourly, daily, monthly} bucket counts. Callers hold the rollups'' lock.';
REVOKE ALL ON FUNCTION tally._rebuild_rollups(text[], uuid[], text[]) FROM PUBLIC, anon, authenticated, service_role;

-- recompute_rollups also rebuilds a bucket that holds only dimension rows (a bug's leftovers).
DO $$
DECLARE
  v_def text := pg_get_functiondef('tally.recompute_rollups(timestamptz, timestamptz)'::regprocedure);
  v_old text := $o$    SELECT 'monthly', u.account_id, u.bucket::text FROM tally.usage_monthly u JOIN tally.accounts a ON a.id = u.account_id$o$;
  v_new text := $n$    SELECT 'daily', u.account_id, u.bucket::text FROM tally.usage_daily_by_dimension u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN (p_from AT TIME ZONE a.timezone)::date AND ((p_to - interval '1 microsecond') AT TIME ZONE a.timezone)::date
    UNION
    SELECT 'monthly', u.account_id, u.bucket::text FROM tally.usage_monthly_by_dimension u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN date_trunc('month', (p_from AT TIME ZONE a.timezone))::date
                       AND date_trunc('month', ((p_to - interval '1 microsecond') AT TIME ZONE a.timezone))::date
    UNION
$n$;
BEGIN
  IF position(v_old IN v_def) = 0 THEN
    RAISE EXCEPTION 'recompute_rollups does not list its stored buckets as expected';
  END IF;
  EXECUTE replace(v_def, v_old, v_new || v_old);
END
$$;

-- ---------------------------------------------------------------------------------------
-- Retention: daily rows by dimension go with the daily rows
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
  v_def text := pg_get_functiondef('tally.apply_retention()'::regprocedure);
  v_old text := $o$  DELETE FROM tally.usage_daily u WHERE u.bucket < tally._retention_floor('daily')::date;
  GET DIAGNOSTICS v_daily = ROW_COUNT;
$o$;
  v_new text := $n$  DELETE FROM tally.usage_daily_by_dimension u WHERE u.bucket < tally._retention_floor('daily')::date;
$n$;
BEGIN
  IF position(v_old IN v_def) = 0 THEN
    RAISE EXCEPTION 'apply_retention does not delete daily rows as expected';
  END IF;
  EXECUTE replace(v_def, v_old, v_old || v_new);
END
$$;
COMMENT ON FUNCTION tally.apply_retention() IS
  'Applies the retention.* settings: drops the monthly events partitions that lie wholly before retention.events (never one holding events the rollups have not folded; it is kept and reported), with their voids; deletes hourly and daily rows (daily rows by dimension with them) and rejected items past their retention. Monthly rows are kept. Run daily by the worker. Returns what it removed (daily_deleted counts usage_daily rows). Service callers only.';

-- ---------------------------------------------------------------------------------------
-- Verification covers the rows by dimension
-- ---------------------------------------------------------------------------------------

DROP FUNCTION tally.verify_rollups(timestamptz, timestamptz);
CREATE FUNCTION tally.verify_rollups(p_from timestamptz, p_to timestamptz)
  RETURNS TABLE (grain text, account_id uuid, bucket text, dim_key uuid, expected jsonb, actual jsonb, dimension text, value text)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET jit = off
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $fn$
DECLARE
  v_columns  text;  -- the event columns the metrics read
  v_keyed    text;  -- the same, from the folded CTE
  v_expected text;
  v_actual   text;
  v_dims     text;
BEGIN
  PERFORM tally._check_rollup_range(p_from, p_to, 'verify');

  SELECT string_agg(format('e.%I', c), ', ' ORDER BY c), string_agg(format('b.%I', c), ', ' ORDER BY c)
  INTO v_columns, v_keyed
  FROM (SELECT DISTINCT unnest(m.columns) AS c FROM tally._rollup_metrics() m) cs;
  SELECT 'jsonb_build_object(' || string_agg(format('%L, %s', m.name, CASE m.combine
           WHEN 'histogram' THEN format('to_jsonb(tally._hist_agg(width_bucket(%1$s, tally.latency_buckets()), CASE WHEN (%1$s) IS NOT NULL THEN 1 END))', m.event_value)
           ELSE m.group_value END), ', ' ORDER BY m.ord) || ')',
         'jsonb_build_object(' || string_agg(format('%L, %s', m.name, CASE m.combine
           WHEN 'histogram' THEN format('to_jsonb(u.%I)', m.name) ELSE format('u.%I', m.name) END), ', ' ORDER BY m.ord) || ')'
  INTO v_expected, v_actual
  FROM tally._rollup_metrics() m;
  SELECT string_agg(format('(%L, %s)', d.dimension, d.value_sql), ', ' ORDER BY d.ord) INTO v_dims
  FROM tally._rollup_dimensions() d;

  RETURN QUERY EXECUTE format($q$
  WITH state AS (
    SELECT s.watermark FROM tally.rollup_state s
  ),
  folded AS MATERIALIZED (
    -- the folded events that can fall in a bucket overlapping the range (a month either
    -- side covers any local month or day around it), with their bucket keys and dimensions
    SELECT e.account_id,
           date_trunc('hour', e.occurred_at, 'UTC') AS hour_utc,
           (e.occurred_at AT TIME ZONE a.timezone)::date AS local_day,
           ($1 AT TIME ZONE a.timezone)::date AS from_day,
           (($2 - interval '1 microsecond') AT TIME ZONE a.timezone)::date AS to_day,
           %6$s AS dim_key,
           e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type, %7$s AS status_class,
           %1$s
    FROM tally.events e
    JOIN tally.accounts a ON a.id = e.account_id
    CROSS JOIN state s
    WHERE e.id <= s.watermark
      AND e.occurred_at >= $1 - interval '32 days' AND e.occurred_at < $2 + interval '32 days'
      AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
  ),
  days AS (
    SELECT b.* FROM folded b
    WHERE b.local_day BETWEEN b.from_day AND b.to_day AND b.local_day >= tally._retention_floor('daily')::date
  ),
  months AS (
    SELECT b.* FROM folded b
    WHERE date_trunc('month', b.local_day) BETWEEN date_trunc('month', b.from_day) AND date_trunc('month', b.to_day)
  ),
  keyed AS (
    -- each folded event once per grain whose bucket overlaps the range, and once per
    -- dimension in the grains by dimension
    SELECT 'hourly' AS grain, b.account_id, b.hour_utc::text AS bucket, b.dim_key, NULL::text AS dimension, NULL::text AS value, %2$s
    FROM folded b
    WHERE b.hour_utc >= date_trunc('hour', $1, 'UTC') AND b.hour_utc < $2 AND b.hour_utc >= tally._retention_floor('hourly')
    UNION ALL
    SELECT 'daily', b.account_id, b.local_day::text, b.dim_key, NULL, NULL, %2$s FROM days b
    UNION ALL
    SELECT 'monthly', b.account_id, date_trunc('month', b.local_day)::date::text, b.dim_key, NULL, NULL, %2$s FROM months b
    UNION ALL
    SELECT 'daily_by_dimension', b.account_id, b.local_day::text, NULL, d.dimension, d.value, %2$s
    FROM days b CROSS JOIN LATERAL (VALUES %5$s) AS d(dimension, value)
    UNION ALL
    SELECT 'monthly_by_dimension', b.account_id, date_trunc('month', b.local_day)::date::text, NULL, d.dimension, d.value, %2$s
    FROM months b CROSS JOIN LATERAL (VALUES %5$s) AS d(dimension, value)
  ),
  expected AS (
    SELECT e.grain, e.account_id, e.bucket, e.dim_key, e.dimension, e.value, %3$s AS m
    FROM keyed e
    GROUP BY 1, 2, 3, 4, 5, 6
  ),
  actual AS (
    -- the stored rows of the same buckets
    SELECT 'hourly' AS grain, u.account_id, u.bucket::text AS bucket, u.dim_key, NULL::text AS dimension, NULL::text AS value, %4$s AS m
    FROM tally.usage_hourly u
    WHERE u.bucket >= date_trunc('hour', $1, 'UTC') AND u.bucket < $2 AND u.bucket >= tally._retention_floor('hourly')
    UNION ALL
    SELECT 'daily', u.account_id, u.bucket::text, u.dim_key, NULL, NULL, %4$s
    FROM tally.usage_daily u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN ($1 AT TIME ZONE a.timezone)::date AND (($2 - interval '1 microsecond') AT TIME ZONE a.timezone)::date
      AND u.bucket >= tally._retention_floor('daily')::date
    UNION ALL
    SELECT 'monthly', u.account_id, u.bucket::text, u.dim_key, NULL, NULL, %4$s
    FROM tally.usage_monthly u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN date_trunc('month', ($1 AT TIME ZONE a.timezone))::date
                       AND date_trunc('month', (($2 - interval '1 microsecond') AT TIME ZONE a.timezone))::date
    UNION ALL
    SELECT 'daily_by_dimension', u.account_id, u.bucket::text, NULL, u.dimension, u.value, %4$s
    FROM tally.usage_daily_by_dimension u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN ($1 AT TIME ZONE a.timezone)::date AND (($2 - interval '1 microsecond') AT TIME ZONE a.timezone)::date
      AND u.bucket >= tally._retention_floor('daily')::date
    UNION ALL
    SELECT 'monthly_by_dimension', u.account_id, u.bucket::text, NULL, u.dimension, u.value, %4$s
    FROM tally.usage_monthly_by_dimension u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN date_trunc('month', ($1 AT TIME ZONE a.timezone))::date
                       AND date_trunc('month', (($2 - interval '1 microsecond') AT TIME ZONE a.timezone))::date
  )
  -- a bucket missing on either side, or any metric that differs
  SELECT coalesce(x.grain, y.grain), coalesce(x.account_id, y.account_id), coalesce(x.bucket, y.bucket),
         coalesce(x.dim_key, y.dim_key), x.m, y.m, coalesce(x.dimension, y.dimension), coalesce(x.value, y.value)
  FROM expected x
  FULL JOIN actual y ON y.grain = x.grain AND y.account_id = x.account_id AND y.bucket = x.bucket
                    AND y.dim_key IS NOT DISTINCT FROM x.dim_key AND y.dimension IS NOT DISTINCT FROM x.dimension
                    AND y.value IS NOT DISTINCT FROM x.value
  WHERE x.m IS DISTINCT FROM y.m
  ORDER BY 1, 2, 3, 4, 7, 8$q$, v_columns, v_keyed, v_expected, v_actual, v_dims, tally._dim_key_sql('e'), tally._status_class_sql('e'))
  USING p_from, p_to;
END
$fn$;
COMMENT ON FUNCTION tally.verify_rollups(timestamptz, timestamptz) IS
  'Compares every hourly, daily and monthly bucket that overlaps [p_from, p_to) (at most 400 days), and its rows by dimension, with the folded raw events (id <= watermark), metric by metric (every metric of tally._rollup_metrics(); hourly and daily buckets past their retention are skipped). Refuses a range starting before the retention of raw events (past_retention, 22023). Returns one row per bucket and dimension tuple (grains hourly, daily, monthly: dim_key) or dimension value (grains daily_by_dimension, monthly_by_dimension: dimension, value) that differs (expected from events, actual stored; NULL when missing); no rows = consistent. A mismatch is repaired with tally.recompute_rollups over the same range. Service callers only.';
REVOKE ALL ON FUNCTION tally.verify_rollups(timestamptz, timestamptz) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.verify_rollups(timestamptz, timestamptz) TO service_role;

-- ---------------------------------------------------------------------------------------
-- Adding a metric later adds it to the tables by dimension too
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION tally._apply_rollup_metrics() RETURNS void
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_table text;
  v_m     record;
BEGIN
  FOREACH v_table IN ARRAY ARRAY['usage_hourly', 'usage_daily', 'usage_monthly', 'usage_daily_by_dimension', 'usage_monthly_by_dimension'] LOOP
    FOR v_m IN
      SELECT m.* FROM tally._rollup_metrics() m
      WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute at
                        WHERE at.attrelid = format('tally.%I', v_table)::regclass
                          AND at.attname = m.name AND NOT at.attisdropped)
      ORDER BY m.ord
    LOOP
      IF v_m.combine <> 'sum' THEN
        RAISE EXCEPTION 'adding a % metric (%) needs its own migration', v_m.combine, v_m.name;
      END IF;
      EXECUTE format('ALTER TABLE tally.%I ADD COLUMN %I %s NOT NULL DEFAULT 0', v_table, v_m.name, v_m.sql_type);
    END LOOP;
  END LOOP;
  FOR v_table IN SELECT g.grain FROM tally._rollup_grains() g ORDER BY g.ord LOOP
    EXECUTE format('CREATE OR REPLACE VIEW tally.%I WITH (security_invoker = true) AS %s',
                   'usage_' || v_table || '_live', tally._live_view_sql(v_table));
  END LOOP;
END
$$;
COMMENT ON FUNCTION tally._apply_rollup_metrics() IS
  'Migration helper: adds the columns of new sum metrics of tally._rollup_metrics() to usage_hourly/daily/monthly and the tables by dimension (NOT NULL DEFAULT 0) and regenerates the three *_live views from the lists.';
REVOKE ALL ON FUNCTION tally._apply_rollup_metrics() FROM PUBLIC, anon, authenticated, service_role;

CREATE OR REPLACE FUNCTION tally._backfill_rollup_metric(p_metric text) RETURNS jsonb
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $fn$
DECLARE
  v_m      record;
  v_g      record;
  v_n      bigint;
  v_counts jsonb := '{}';
  v_dims   text;
BEGIN
  SELECT * INTO v_m FROM tally._rollup_metrics() m WHERE m.name = p_metric AND m.combine = 'sum';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no sum metric %', p_metric;
  END IF;
  SELECT string_agg(format('(%L, %s)', d.dimension, d.value_sql), ', ' ORDER BY d.ord) INTO v_dims
  FROM tally._rollup_dimensions() d;
  PERFORM pg_advisory_xact_lock(hashtext('tally.run_rollups'));
  FOR v_g IN SELECT * FROM tally._rollup_grains() ORDER BY ord LOOP
    EXECUTE format($q$
      UPDATE tally.%1$I u SET %2$I = s.v
      FROM (
        SELECT e.account_id, %3$s AS bucket, %4$s AS dim_key, %5$s AS v
        FROM tally.events e JOIN tally.accounts a ON a.id = e.account_id
        WHERE e.id <= (SELECT s.watermark FROM tally.rollup_state s)
          AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
        GROUP BY 1, 2, 3
      ) s
      WHERE u.account_id = s.account_id AND u.bucket = s.bucket AND u.dim_key = s.dim_key
        AND u.%2$I IS DISTINCT FROM s.v$q$,
      v_g.table_name, v_m.name, v_g.event_bucket, tally._dim_key_sql('e'), v_m.group_value);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object(v_g.grain, v_n);
    CONTINUE WHEN v_g.grain = 'hourly';
    -- the same metric per dimension value (group_value reads the events as e)
    EXECUTE format($q$
      UPDATE tally.%1$I u SET %2$I = s.v
      FROM (
        SELECT e.account_id, e.bucket, d.dimension, d.value, %5$s AS v
        FROM (SELECT x.*, %3$s AS bucket, %6$s AS status_class
              FROM tally.events x JOIN tally.accounts a ON a.id = x.account_id
              WHERE x.id <= (SELECT s.watermark FROM tally.rollup_state s)
                AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = x.account_id AND v.event_id = x.id)) e
        CROSS JOIN LATERAL (SELECT b.* FROM (SELECT e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type, e.status_class) b) b
        CROSS JOIN LATERAL (VALUES %4$s) AS d(dimension, value)
        GROUP BY 1, 2, 3, 4
      ) s
      WHERE u.account_id = s.account_id AND u.bucket = s.bucket AND u.dimension = s.dimension
        AND u.value IS NOT DISTINCT FROM s.value AND u.%2$I IS DISTINCT FROM s.v$q$,
      v_g.table_name || '_by_dimension', v_m.name, replace(v_g.event_bucket, 'e.', 'x.'), v_dims, v_m.group_value,
      tally._status_class_sql('x'));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object(v_g.grain || '_by_dimension', v_n);
  END LOOP;
  RETURN v_counts;
END
$fn$;
COMMENT ON FUNCTION tally._backfill_rollup_metric(text) IS
  'Migration helper: sets a new sum metric of every stored usage_hourly/daily/monthly row, and of the rows by dimension, from the folded raw events (id <= watermark, not voided) and returns the rows changed per grain; rows whose raw events are past retention keep the default.';
REVOKE ALL ON FUNCTION tally._backfill_rollup_metric(text) FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- Existing installations: fill the new tables from what is already folded
-- ---------------------------------------------------------------------------------------

-- Every daily and monthly bucket still holding all its raw events is folded again into
-- the rows by dimension (the status class is not in the stored tuples, so they cannot be
-- derived from usage_daily). Older buckets get their tuple dimensions from the stored rows
-- and no status-class rows: their raw events are gone, and an absent status class is shown
-- as absent, never guessed.
DO $$
DECLARE
  v_grain text;
  v_accounts uuid[];
  v_from timestamptz[];
  v_to timestamptz[];
  v_keys text[];
  v_floor timestamptz := tally._retention_floor('events');
  v_watermark bigint := (SELECT s.watermark FROM tally.rollup_state s);
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('tally.run_rollups'));
  FOREACH v_grain IN ARRAY ARRAY['daily', 'monthly'] LOOP
    EXECUTE format($q$
      SELECT array_agg(r.account_id), array_agg(r.range_from), array_agg(r.range_to), array_agg(r.bucket::text)
      FROM (SELECT DISTINCT u.account_id, u.bucket,
                   (u.bucket::timestamp AT TIME ZONE a.timezone) - interval '1 day' AS range_from,
                   ((u.bucket + %2$L::interval) AT TIME ZONE a.timezone) + interval '1 day' AS range_to
            FROM tally.%1$I u JOIN tally.accounts a ON a.id = u.account_id
            WHERE (u.bucket::timestamp AT TIME ZONE a.timezone) >= $1) r$q$,
      'usage_' || v_grain, CASE v_grain WHEN 'daily' THEN '1 day' ELSE '1 month' END)
    INTO v_accounts, v_from, v_to, v_keys USING v_floor;
    IF v_accounts IS NOT NULL THEN
      PERFORM tally._fold_rollups('ranges', 0, v_watermark, ARRAY[v_grain || '_by_dimension'], v_accounts, v_from, v_to, v_keys);
    END IF;
    EXECUTE format($q$
      INSERT INTO tally.%2$I (account_id, bucket, dimension, value, %3$s)
      SELECT u.account_id, u.bucket, d.dimension, d.value, %4$s
      FROM tally.%1$I u JOIN tally.accounts a ON a.id = u.account_id
      CROSS JOIN LATERAL (SELECT b.* FROM (SELECT u.api_key_id, u.event_type, u.provider, u.model, u.endpoint, u.file_type, NULL::text AS status_class) b) b
      CROSS JOIN LATERAL (VALUES %5$s) AS d(dimension, value)
      WHERE (u.bucket::timestamp AT TIME ZONE a.timezone) < $1 AND d.dimension <> 'status_class'
      GROUP BY u.account_id, u.bucket, d.dimension, d.value$q$,
      'usage_' || v_grain, 'usage_' || v_grain || '_by_dimension',
      (SELECT string_agg(format('%I', m.name), ', ' ORDER BY m.ord) FROM tally._rollup_metrics() m),
      (SELECT string_agg(CASE m.combine
                WHEN 'sum' THEN format('sum(u.%1$I)::%2$s', m.name, m.sql_type)
                WHEN 'max' THEN format('max(u.%I)', m.name)
                ELSE format('ARRAY[%s]', (SELECT string_agg(format('sum(u.%I[%s])::bigint', m.name, k), ', ' ORDER BY k) FROM generate_series(1, 42) k)) END,
                ', ' ORDER BY m.ord) FROM tally._rollup_metrics() m),
      (SELECT string_agg(format('(%L, %s)', d.dimension, d.value_sql), ', ' ORDER BY d.ord) FROM tally._rollup_dimensions() d))
    USING v_floor;
  END LOOP;
END
$$;
