-- One source for the rollup metrics and the per-grain bucket expressions.
--
-- Before: the fold (tally._fold_rollups), tally.verify_rollups and the three *_live views
-- each spelled out the fifteen metrics and the three bucket expressions. Now
-- tally._rollup_metrics() and tally._rollup_grains() list them once, and the fold, the
-- verification and the live views are generated from those lists. Adding a metric is one
-- row in tally._rollup_metrics() plus `SELECT tally._apply_rollup_metrics()` (which adds
-- the columns to the three tables and regenerates the live views) and a backfill of the
-- stored rows (tally._backfill_rollup_metric).
--
-- The expressions in the lists are constants of this schema (only its owner can redefine
-- the functions); no input ever reaches the generated statements. Identifiers go through
-- format('%I'). The live views get the expressions as text, never through a SQL helper
-- function (a pinned search_path stops a SQL function from being inlined, and a call per
-- tail row would then cost a function call each).

-- ---------------------------------------------------------------------------------------
-- The lists
-- ---------------------------------------------------------------------------------------

-- The metrics, in column order. Each expression reads one event as `e` (a tally.events
-- row, or any row with the columns listed in `columns`):
--   combine    how two partial values of a bucket combine: sum, max, or histogram (a
--              42-slot tally.latency_buckets() histogram of event_value, added slot by slot)
--   event_value  the metric of a single event (the live views' tail: one row per event)
--   group_value  the metric of a group of events (the fold and verify_rollups)
CREATE FUNCTION tally._rollup_metrics()
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
      (15, 'latency_hist', 'bigint[]', 'histogram', 'e.latency_ms', NULL, '{latency_ms}')
    ) as m(ord, name, sql_type, combine, event_value, group_value, columns)
  $$;
COMMENT ON FUNCTION tally._rollup_metrics() IS
  'The rollup metrics in column order, the one list the fold, tally.verify_rollups and the *_live views are generated from: name (the column of usage_hourly/daily/monthly), sql_type, combine (sum, max or histogram), event_value (the metric of one event e), group_value (of a group of events e) and the event columns they read.';
REVOKE ALL ON FUNCTION tally._rollup_metrics() FROM PUBLIC, anon, authenticated, service_role;

-- The grains. event_bucket reads an event `e` and its account `a` (a.timezone); the fold
-- buckets from its one pass over the events (`b`: hour_utc, local_day) with fold_bucket.
CREATE FUNCTION tally._rollup_grains()
  RETURNS TABLE (ord integer, grain text, table_name text, bucket_type text, uses_timezone boolean, event_bucket text, fold_bucket text)
  LANGUAGE sql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
    select * from (values
      (1, 'hourly', 'usage_hourly', 'timestamptz', false, 'date_trunc(''hour'', e.occurred_at, ''UTC'')', 'b.hour_utc'),
      (2, 'daily', 'usage_daily', 'date', true, '(e.occurred_at AT TIME ZONE a.timezone)::date', 'b.local_day'),
      (3, 'monthly', 'usage_monthly', 'date', true, 'date_trunc(''month'', e.occurred_at AT TIME ZONE a.timezone)::date', 'date_trunc(''month'', b.local_day)::date')
    ) as g(ord, grain, table_name, bucket_type, uses_timezone, event_bucket, fold_bucket)
  $$;
COMMENT ON FUNCTION tally._rollup_grains() IS
  'The rollup grains: grain, its table, the bucket type, whether the bucket depends on the account''s time zone, the bucket of an event e of account a (event_bucket), and the fold''s bucket from its per-hour, per-local-day pass (fold_bucket).';
REVOKE ALL ON FUNCTION tally._rollup_grains() FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- Generated pieces
-- ---------------------------------------------------------------------------------------

-- The dimension key of tally._dim_key as an expression over the columns of p_alias, so the
-- live views compute it per tail row without a function call. Same text as the function.
CREATE FUNCTION tally._dim_key_sql(p_alias text) RETURNS text
  LANGUAGE sql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
    select format('pg_catalog.md5(pg_catalog.concat_ws(''|'', coalesce(%1$I.api_key_id::text, ''-''), '
                  'coalesce(pg_catalog.length(%1$I.event_type) || '':'' || %1$I.event_type, ''-''), '
                  'coalesce(pg_catalog.length(%1$I.provider) || '':'' || %1$I.provider, ''-''), '
                  'coalesce(pg_catalog.length(%1$I.model) || '':'' || %1$I.model, ''-''), '
                  'coalesce(pg_catalog.length(%1$I.endpoint) || '':'' || %1$I.endpoint, ''-''), '
                  'coalesce(pg_catalog.length(%1$I.file_type) || '':'' || %1$I.file_type, ''-'')))::uuid', p_alias)
  $$;
COMMENT ON FUNCTION tally._dim_key_sql(text) IS
  'The expression of tally._dim_key over the dimension columns of the given alias (for generated SQL).';
REVOKE ALL ON FUNCTION tally._dim_key_sql(text) FROM PUBLIC, anon, authenticated, service_role;

-- The 42 slot conditions of a latency histogram over an expression: slot k holds what
-- width_bucket(value, tally.latency_buckets()) puts there (0 below the first bound, 41
-- from the last on). Constants only, one comparison or two per slot.
CREATE FUNCTION tally._hist_slot_conditions(p_value text) RETURNS text[]
  LANGUAGE sql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
    select pg_catalog.array_agg(pg_catalog.concat_ws(' AND ',
             CASE WHEN k > 0 THEN format('(%s) >= %s', p_value, b[k]) END,
             CASE WHEN k < 41 THEN format('(%s) < %s', p_value, b[k + 1]) END) ORDER BY k)
    from pg_catalog.generate_series(0, 41) as k, tally.latency_buckets() as b
  $$;
COMMENT ON FUNCTION tally._hist_slot_conditions(text) IS
  'The 42 conditions (slot 0..41, as SQL text) that put a value expression into its latency histogram slot, equal to width_bucket(value, tally.latency_buckets()).';
REVOKE ALL ON FUNCTION tally._hist_slot_conditions(text) FROM PUBLIC, anon, authenticated, service_role;

-- The SELECT of a live view: the stored rows plus the tail (one row per event), grouped.
-- Histograms travel as 42 plain columns (slot k of metric m is m_h<k>) and are summed slot
-- by slot: plain aggregates, no function call per row.
CREATE FUNCTION tally._live_view_sql(p_grain text) RETURNS text
  LANGUAGE plpgsql STABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_g        record;
  v_outer    text;
  v_stored   text;
  v_tail     text;
BEGIN
  SELECT * INTO v_g FROM tally._rollup_grains() g WHERE g.grain = p_grain;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown grain %', p_grain;
  END IF;
  SELECT string_agg(CASE m.combine
           WHEN 'sum' THEN format('sum(x.%1$I)::%2$s AS %1$I', m.name, m.sql_type)
           WHEN 'max' THEN format('max(x.%1$I) AS %1$I', m.name)
           ELSE format('ARRAY[%s] AS %I',
                       (SELECT string_agg(format('sum(x.%I)::bigint', m.name || '_h' || k), ', ' ORDER BY k) FROM generate_series(0, 41) k),
                       m.name) END, ', ' ORDER BY m.ord),
         string_agg(CASE m.combine
           WHEN 'histogram' THEN (SELECT string_agg(format('u.%1$I[%2$s] AS %3$I', m.name, k + 1, m.name || '_h' || k), ', ' ORDER BY k)
                                  FROM generate_series(0, 41) k)
           ELSE format('u.%I', m.name) END, ', ' ORDER BY m.ord),
         string_agg(CASE m.combine
           WHEN 'histogram' THEN (SELECT string_agg(format('CASE WHEN %s THEN 1 ELSE 0 END', c.cond), ', ' ORDER BY c.k)
                                  FROM unnest(tally._hist_slot_conditions(m.event_value)) WITH ORDINALITY AS c(cond, k))
           ELSE format('(%s)::%s', m.event_value, m.sql_type) END, ', ' ORDER BY m.ord)
  INTO v_outer, v_stored, v_tail
  FROM tally._rollup_metrics() m;

  RETURN format($v$
  SELECT x.account_id, x.bucket, x.dim_key, x.api_key_id, x.event_type, x.provider, x.model, x.endpoint, x.file_type,
         %1$s
  FROM (
    SELECT u.account_id, u.bucket, u.dim_key, u.api_key_id, u.event_type, u.provider, u.model, u.endpoint, u.file_type,
           %2$s
    FROM tally.%3$I u
    UNION ALL
    -- the tail: events past the watermark, one row each
    SELECT e.account_id, %4$s, %5$s,
           e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type,
           %6$s
    FROM tally.events_tail() e%7$s
  ) x
  GROUP BY x.account_id, x.bucket, x.dim_key, x.api_key_id, x.event_type, x.provider, x.model, x.endpoint, x.file_type$v$,
    v_outer, v_stored, v_g.table_name, v_g.event_bucket, tally._dim_key_sql('e'), v_tail,
    CASE WHEN v_g.uses_timezone THEN ' JOIN tally.accounts a ON a.id = e.account_id' ELSE '' END);
END
$$;
COMMENT ON FUNCTION tally._live_view_sql(text) IS
  'The SELECT of the live view of a grain (tally.usage_<grain>_live), generated from tally._rollup_metrics() and tally._rollup_grains().';
REVOKE ALL ON FUNCTION tally._live_view_sql(text) FROM PUBLIC, anon, authenticated, service_role;

-- Brings the three tables and live views in line with tally._rollup_metrics(): adds the
-- metric columns a table lacks (a sum starts at 0, anything else at NULL; existing rows
-- then need tally._backfill_rollup_metric), and recreates the live views (CREATE OR
-- REPLACE keeps their grants and comments; a new metric is a new last column).
CREATE FUNCTION tally._apply_rollup_metrics() RETURNS void
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_g record;
  v_m record;
BEGIN
  FOR v_g IN SELECT * FROM tally._rollup_grains() ORDER BY ord LOOP
    FOR v_m IN
      SELECT m.* FROM tally._rollup_metrics() m
      WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute at
                        WHERE at.attrelid = format('tally.%I', v_g.table_name)::regclass
                          AND at.attname = m.name AND NOT at.attisdropped)
      ORDER BY m.ord
    LOOP
      IF v_m.combine <> 'sum' THEN
        RAISE EXCEPTION 'adding a % metric (%) needs its own migration', v_m.combine, v_m.name;
      END IF;
      EXECUTE format('ALTER TABLE tally.%I ADD COLUMN %I %s NOT NULL DEFAULT 0', v_g.table_name, v_m.name, v_m.sql_type);
    END LOOP;
    EXECUTE format('CREATE OR REPLACE VIEW tally.%I WITH (security_invoker = true) AS %s',
                   v_g.table_name || '_live', tally._live_view_sql(v_g.grain));
  END LOOP;
END
$$;
COMMENT ON FUNCTION tally._apply_rollup_metrics() IS
  'Migration helper: adds the columns of new sum metrics of tally._rollup_metrics() to usage_hourly/daily/monthly (NOT NULL DEFAULT 0) and regenerates the three *_live views from the lists.';
REVOKE ALL ON FUNCTION tally._apply_rollup_metrics() FROM PUBLIC, anon, authenticated, service_role;

-- Sets one sum metric of every stored row from the raw events the rollups have folded
-- (id <= watermark, not voided); rows whose events are gone (past retention) keep the
-- column's default. Run in a migration, holding the rollups' lock: O(history) once.
CREATE FUNCTION tally._backfill_rollup_metric(p_metric text) RETURNS jsonb
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_m      record;
  v_g      record;
  v_n      bigint;
  v_counts jsonb := '{}';
BEGIN
  SELECT * INTO v_m FROM tally._rollup_metrics() m WHERE m.name = p_metric AND m.combine = 'sum';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no sum metric %', p_metric;
  END IF;
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
  END LOOP;
  RETURN v_counts;
END
$$;
COMMENT ON FUNCTION tally._backfill_rollup_metric(text) IS
  'Migration helper: sets a new sum metric of every stored usage_hourly/daily/monthly row from the folded raw events (id <= watermark, not voided) and returns the rows changed per grain; rows whose raw events are past retention keep the default.';
REVOKE ALL ON FUNCTION tally._backfill_rollup_metric(text) FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- The fold, generated from the lists (same statement shape as before: one pass over the
-- events grouped by account x UTC hour x local day x dimensions, then one additive upsert
-- per grain). Copied from its last definition (the histogram-columns migration) with the
-- metric and bucket parts generated.
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION tally._fold_rollups(p_source text, p_lo bigint, p_hi bigint, p_grains text[],
                                    p_range_accounts uuid[] DEFAULT NULL, p_range_from timestamptz[] DEFAULT NULL,
                                    p_range_to timestamptz[] DEFAULT NULL, p_range_buckets text[] DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  SET jit = off
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  SET work_mem = '32MB'
  SET enable_sort = off
  AS $$
DECLARE
  v_from      text;
  v_where     text;
  v_columns   text;  -- the event columns the metrics read
  v_base      text;  -- the pass over the events: each metric's group value (histograms: 42 slot counts)
  v_insert    text;  -- a grain's column list
  v_select    text;  -- a grain: the metrics combined over the pass's groups
  v_merge     text;  -- on conflict: the stored row combined with the new one
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
    SELECT format('e.id <= $2 AND %s = r.bucket::%s', g.event_bucket, g.bucket_type) INTO v_where
    FROM tally._rollup_grains() g WHERE g.grain = p_grains[1];
    IF v_where IS NULL THEN
      RAISE EXCEPTION 'unknown grain %', p_grains[1];
    END IF;
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
         string_agg(CASE m.combine
           WHEN 'sum' THEN format('sum(b.%I)', m.name)
           WHEN 'max' THEN format('max(b.%I)', m.name)
           ELSE format('ARRAY[%s]', (SELECT string_agg(format('sum(b.%I)::bigint', m.name || '_h' || k), ', ' ORDER BY k) FROM generate_series(0, 41) k)) END,
           ', ' ORDER BY m.ord),
         string_agg(CASE m.combine
           WHEN 'sum' THEN format('%1$I = u.%1$I + excluded.%1$I', m.name)
           WHEN 'max' THEN format('%1$I = greatest(u.%1$I, excluded.%1$I)', m.name)
           -- rows are written only by the fold: 1-based, 42 slots
           ELSE format('%1$I = ARRAY[%2$s]', m.name,
                       (SELECT string_agg(format('u.%1$I[%2$s] + excluded.%1$I[%2$s]', m.name, k), ', ' ORDER BY k) FROM generate_series(1, 42) k)) END,
           ', ' ORDER BY m.ord)
  INTO v_base, v_insert, v_select, v_merge
  FROM tally._rollup_metrics() m;

  SELECT string_agg(format($u$,
  %1$s AS (
    INSERT INTO tally.%2$I AS u (account_id, bucket, dim_key, api_key_id, event_type, provider, model, endpoint, file_type, %4$s)
    SELECT b.account_id, %3$s, b.dim_key, b.api_key_id, b.event_type, b.provider, b.model, b.endpoint, b.file_type, %5$s
    FROM base b
    GROUP BY b.account_id, %3$s, b.dim_key, b.api_key_id, b.event_type, b.provider, b.model, b.endpoint, b.file_type
    ON CONFLICT (account_id, bucket, dim_key) DO UPDATE SET %6$s
    RETURNING 1
  )$u$, g.grain, g.table_name, g.fold_bucket, v_insert, v_select, v_merge), '' ORDER BY g.ord)
  INTO v_upserts
  FROM tally._rollup_grains() g
  WHERE g.grain = ANY (p_grains);
  IF v_upserts IS NULL THEN
    RAISE EXCEPTION 'no known grain in %', p_grains;
  END IF;

  EXECUTE format($q$
  WITH window_events AS (
    -- the events to fold, with their account's time zone
    SELECT e.account_id, e.occurred_at, a.timezone, e.api_key_id, e.event_type, e.provider, e.model, e.endpoint,
           e.file_type, %3$s
    FROM %1$s
    WHERE %2$s
      AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
  ),
  base AS MATERIALIZED (
    -- one pass over the events: partial sums and histogram per UTC hour x local day x
    -- dimensions (an hour can straddle two local days in zones with :30 or :45 offsets)
    SELECT e.account_id,
           date_trunc('hour', e.occurred_at) AS hour_utc,  -- TimeZone is UTC here (SET above)
           (e.occurred_at AT TIME ZONE e.timezone)::date AS local_day,
           -- computed per group, not per event
           tally._dim_key(e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type) AS dim_key,
           e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type,
           %4$s
    FROM window_events e
    GROUP BY 1, 2, 3, 5, 6, 7, 8, 9, 10
  )%5$s
  SELECT coalesce(sum(b.requests), 0) FROM base b$q$, v_from, v_where, v_columns, v_base, v_upserts)
  INTO v_events
  USING p_lo, p_hi, p_range_accounts, p_range_from, p_range_to, p_range_buckets;
  RETURN v_events;
END
$$;
COMMENT ON FUNCTION tally._fold_rollups(text, bigint, bigint, text[], uuid[], timestamptz[], timestamptz[], text[]) IS
  'Folds events into the given grains (hourly, daily, monthly) with additive upserts and returns how many: the id window (p_lo, p_hi] for source window, or, for source ranges (one grain), the events with id <= p_hi in the given (account, from, to, bucket) rows whose bucket is that bucket. Voided events are skipped. The statement is generated from tally._rollup_metrics() and tally._rollup_grains().';

-- ---------------------------------------------------------------------------------------
-- Verification, with the metric parts generated from the list. The range rules per grain
-- are unchanged (copied from the verify-rollups migration). Expected histograms are
-- computed another way than the fold's (width_bucket and tally._hist_agg), so a wrong
-- slot condition shows.
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION tally.verify_rollups(p_from timestamptz, p_to timestamptz)
  RETURNS TABLE (grain text, account_id uuid, bucket text, dim_key uuid, expected jsonb, actual jsonb)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET jit = off
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_columns  text;  -- the event columns the metrics read
  v_keyed    text;  -- the same, from the folded CTE
  v_expected text;
  v_actual   text;
BEGIN
  PERFORM tally._check_rollup_range(p_from, p_to, 'verify');

  SELECT string_agg(format('e.%I', c), ', ' ORDER BY c), string_agg(format('f.%I', c), ', ' ORDER BY c)
  INTO v_columns, v_keyed
  FROM (SELECT DISTINCT unnest(m.columns) AS c FROM tally._rollup_metrics() m) cs;
  SELECT 'jsonb_build_object(' || string_agg(format('%L, %s', m.name, CASE m.combine
           WHEN 'histogram' THEN format('to_jsonb(tally._hist_agg(width_bucket(%1$s, tally.latency_buckets()), CASE WHEN (%1$s) IS NOT NULL THEN 1 END))', m.event_value)
           ELSE m.group_value END), ', ' ORDER BY m.ord) || ')',
         'jsonb_build_object(' || string_agg(format('%L, %s', m.name, CASE m.combine
           WHEN 'histogram' THEN format('to_jsonb(u.%I)', m.name) ELSE format('u.%I', m.name) END), ', ' ORDER BY m.ord) || ')'
  INTO v_expected, v_actual
  FROM tally._rollup_metrics() m;

  RETURN QUERY EXECUTE format($q$
  WITH state AS (
    SELECT s.watermark FROM tally.rollup_state s
  ),
  folded AS MATERIALIZED (
    -- the folded events that can fall in a bucket overlapping the range (a month either
    -- side covers any local month or day around it), with their three bucket keys
    SELECT e.account_id,
           date_trunc('hour', e.occurred_at, 'UTC') AS hour_utc,
           (e.occurred_at AT TIME ZONE a.timezone)::date AS local_day,
           ($1 AT TIME ZONE a.timezone)::date AS from_day,
           (($2 - interval '1 microsecond') AT TIME ZONE a.timezone)::date AS to_day,
           tally._dim_key(e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type) AS dim_key,
           %1$s
    FROM tally.events e
    JOIN tally.accounts a ON a.id = e.account_id
    CROSS JOIN state s
    WHERE e.id <= s.watermark
      AND e.occurred_at >= $1 - interval '32 days' AND e.occurred_at < $2 + interval '32 days'
      AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
  ),
  keyed AS (
    -- each folded event once per grain whose bucket overlaps the range
    SELECT 'hourly' AS grain, f.account_id, f.hour_utc::text AS bucket, f.dim_key, %2$s
    FROM folded f
    WHERE f.hour_utc >= date_trunc('hour', $1, 'UTC') AND f.hour_utc < $2 AND f.hour_utc >= tally._retention_floor('hourly')
    UNION ALL
    SELECT 'daily', f.account_id, f.local_day::text, f.dim_key, %2$s
    FROM folded f
    WHERE f.local_day BETWEEN f.from_day AND f.to_day AND f.local_day >= tally._retention_floor('daily')::date
    UNION ALL
    SELECT 'monthly', f.account_id, date_trunc('month', f.local_day)::date::text, f.dim_key, %2$s
    FROM folded f
    WHERE date_trunc('month', f.local_day) BETWEEN date_trunc('month', f.from_day) AND date_trunc('month', f.to_day)
  ),
  expected AS (
    SELECT e.grain, e.account_id, e.bucket, e.dim_key, %3$s AS m
    FROM keyed e
    GROUP BY 1, 2, 3, 4
  ),
  actual AS (
    -- the stored rows of the same buckets
    SELECT 'hourly' AS grain, u.account_id, u.bucket::text AS bucket, u.dim_key, %4$s AS m
    FROM tally.usage_hourly u
    WHERE u.bucket >= date_trunc('hour', $1, 'UTC') AND u.bucket < $2 AND u.bucket >= tally._retention_floor('hourly')
    UNION ALL
    SELECT 'daily', u.account_id, u.bucket::text, u.dim_key, %4$s
    FROM tally.usage_daily u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN ($1 AT TIME ZONE a.timezone)::date AND (($2 - interval '1 microsecond') AT TIME ZONE a.timezone)::date
      AND u.bucket >= tally._retention_floor('daily')::date
    UNION ALL
    SELECT 'monthly', u.account_id, u.bucket::text, u.dim_key, %4$s
    FROM tally.usage_monthly u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN date_trunc('month', ($1 AT TIME ZONE a.timezone))::date
                       AND date_trunc('month', (($2 - interval '1 microsecond') AT TIME ZONE a.timezone))::date
  )
  -- a bucket missing on either side, or any metric that differs
  SELECT coalesce(x.grain, y.grain), coalesce(x.account_id, y.account_id), coalesce(x.bucket, y.bucket),
         coalesce(x.dim_key, y.dim_key), x.m, y.m
  FROM expected x
  FULL JOIN actual y ON y.grain = x.grain AND y.account_id = x.account_id AND y.bucket = x.bucket AND y.dim_key = x.dim_key
  WHERE x.m IS DISTINCT FROM y.m
  ORDER BY 1, 2, 3, 4$q$, v_columns, v_keyed, v_expected, v_actual)
  USING p_from, p_to;
END
$$;
COMMENT ON FUNCTION tally.verify_rollups(timestamptz, timestamptz) IS
  'Compares every hourly, daily and monthly bucket that overlaps [p_from, p_to) (at most 400 days) with the folded raw events (id <= watermark), metric by metric (every metric of tally._rollup_metrics(); hourly and daily buckets past their retention are skipped). Refuses a range starting before the retention of raw events (past_retention, 22023). Returns one row per bucket and dimension tuple that differs (expected from events, actual stored; NULL when missing); no rows = consistent. A mismatch is repaired with tally.recompute_rollups over the same range. Service callers only.';

-- The live views, generated (same columns, types and order as before).
SELECT tally._apply_rollup_metrics();
