-- Dashboard analytics: the questions every usage dashboard asks, as functions.
--
-- Every answer is read from the aggregates (hourly, daily, monthly, and the rows by
-- dimension) plus the unfolded tail, in one snapshot (the functions are STABLE, so every
-- statement in them sees what the calling statement sees: the watermark and the rows it
-- covers were committed together). The tail is read by id above the watermark, so the cost
-- is the window's rows plus the few events not folded yet, never the ledger.
--
-- Which aggregate answers: with no filter, or a filter on the dimension being broken down
-- (or on one dimension only), the rows by dimension (a handful per day); otherwise the
-- rows per dimension tuple, which carry every dimension and so answer any combination of
-- filters. Both hold the same events; tally.verify_rollups checks both.
--
-- Callers: service_role for any account; members of an account (any role) for theirs;
-- anyone else gets forbidden (42501), whether or not the account exists. The functions are
-- SECURITY DEFINER and filter on the account themselves (the guard runs first), so members
-- pay for one membership lookup, not for a policy per row.
--
-- Dynamic SQL here is assembled only from constants of this schema (the metric list, the
-- dimension list, table names from a fixed set) and identifiers through %I; every value
-- the caller gives travels as a parameter (EXECUTE ... USING).

-- An account's events past the watermark, found by id: the tail of one account costs its
-- own unfolded events, not its history (the primary key leads with occurred_at after the
-- account) nor every tenant's tail (the BRIN index on id).
CREATE INDEX events_account_id_id ON tally.events (account_id, id);

-- ---------------------------------------------------------------------------------------
-- Shared pieces
-- ---------------------------------------------------------------------------------------

-- The first instant at which an account's clock reads a local time (a day, week or month
-- start). Where clocks fall back from 01:00 to 00:00 (Atlantic/Azores, America/Havana),
-- midnight happens twice and `timestamp AT TIME ZONE zone` takes the second reading, but
-- the rollups count the first hour's events in that day: read the midnight with the offset
-- in force an hour before it, the first pass. Elsewhere this is what AT TIME ZONE gives (in
-- a gap at midnight, spring forward, both give the first instant after the gap).
CREATE FUNCTION tally._local_start(p_local timestamp, p_timezone text) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$ select least(p_local AT TIME ZONE p_timezone, ((p_local - interval '1 hour') AT TIME ZONE p_timezone) + interval '1 hour') $$;
COMMENT ON FUNCTION tally._local_start(timestamp, text) IS
  'The first instant at which the clock of p_timezone reads p_local (a local midnight that happens twice, clocks falling back from 01:00 to 00:00: its first pass; AT TIME ZONE alone gives the second).';
REVOKE ALL ON FUNCTION tally._local_start(timestamp, text) FROM PUBLIC, anon, authenticated, service_role;

-- The filter arguments: each NULL (no filter) or a non-empty list of at most 1000 values.
CREATE FUNCTION tally._check_usage_filters(p_api_key_ids uuid[], p_event_types text[], p_providers text[],
    p_models text[], p_endpoints text[], p_file_types text[]) RETURNS integer
  LANGUAGE plpgsql STABLE
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_name  text;
  v_n     integer;
  v_count integer := 0;
BEGIN
  FOR v_name, v_n IN
    SELECT f.name, f.n FROM (VALUES
      ('api_key_ids', cardinality(p_api_key_ids)), ('event_types', cardinality(p_event_types)),
      ('providers', cardinality(p_providers)), ('models', cardinality(p_models)),
      ('endpoints', cardinality(p_endpoints)), ('file_types', cardinality(p_file_types))) AS f(name, n)
    WHERE f.n IS NOT NULL
  LOOP
    IF v_n = 0 THEN
      PERFORM tally._raise('invalid_parameter', format('%s: an empty list matches nothing; pass NULL for no filter', v_name));
    ELSIF v_n > 1000 THEN
      PERFORM tally._raise('invalid_parameter', format('%s: at most 1000 values (got %s)', v_name, v_n));
    END IF;
    v_count := v_count + 1;
  END LOOP;
  IF array_position(p_api_key_ids, NULL) IS NOT NULL OR array_position(p_event_types, NULL) IS NOT NULL
     OR array_position(p_providers, NULL) IS NOT NULL OR array_position(p_models, NULL) IS NOT NULL
     OR array_position(p_endpoints, NULL) IS NOT NULL OR array_position(p_file_types, NULL) IS NOT NULL THEN
    PERFORM tally._raise('invalid_parameter', 'filters: a list may not hold NULL (absent values never match a filter)');
  END IF;
  RETURN v_count;
END
$$;
COMMENT ON FUNCTION tally._check_usage_filters(uuid[], text[], text[], text[], text[], text[]) IS
  'Raises invalid_parameter for an empty filter list, one longer than 1000 values or one holding NULL; returns how many filters are given.';
REVOKE ALL ON FUNCTION tally._check_usage_filters(uuid[], text[], text[], text[], text[], text[]) FROM PUBLIC, anon, authenticated, service_role;

-- The constant pieces of tally._usage_by's statement, from the metric list, computed once
-- here (this migration) instead of on every call: the stored columns (histograms as 42
-- columns h0..h41), the tail's group values, the outer sums, and the column names.
DO $do$
DECLARE
  v_stored text; v_tail text; v_outer text; v_columns text;
BEGIN
  SELECT string_agg(CASE m.combine
           WHEN 'histogram' THEN (SELECT string_agg(format('u.%1$I[%2$s] AS h%3$s', m.name, k + 1, k), ', ' ORDER BY k) FROM generate_series(0, 41) k)
           ELSE format('u.%I', m.name) END, ', ' ORDER BY m.ord),
         string_agg(CASE m.combine
           WHEN 'histogram' THEN (SELECT string_agg(format('count(*) FILTER (WHERE %s)', c.cond), ', ' ORDER BY c.k)
                                  FROM unnest(tally._hist_slot_conditions(m.event_value)) WITH ORDINALITY AS c(cond, k))
           ELSE m.group_value END, ', ' ORDER BY m.ord),
         string_agg(CASE m.combine
           WHEN 'sum' THEN format('coalesce(sum(x.%1$I), 0)::%2$s', m.name, m.sql_type)
           WHEN 'max' THEN format('max(x.%I)', m.name)
           ELSE format('ARRAY[%s]', (SELECT string_agg(format('coalesce(sum(x.h%s), 0)::bigint', k), ', ' ORDER BY k) FROM generate_series(0, 41) k)) END
           || format(' AS %I', m.name), ', ' ORDER BY m.ord),
         string_agg(CASE m.combine
           WHEN 'histogram' THEN (SELECT string_agg(format('h%s', k), ', ' ORDER BY k) FROM generate_series(0, 41) k)
           ELSE format('%I', m.name) END, ', ' ORDER BY m.ord)
  INTO v_stored, v_tail, v_outer, v_columns
  FROM tally._rollup_metrics() m;
  EXECUTE format($f$
    CREATE FUNCTION tally._usage_sql_parts(OUT stored text, OUT tail text, OUT outer_sums text, OUT columns text)
      LANGUAGE sql IMMUTABLE
      SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
      AS $b$ select %L::text, %L::text, %L::text, %L::text $b$$f$, v_stored, v_tail, v_outer, v_columns);
END
$do$;
COMMENT ON FUNCTION tally._usage_sql_parts() IS
  'The constant SQL pieces of tally._usage_by, generated from tally._rollup_metrics() when this migration ran: stored (a rollup row u as columns, histogram slots h0..h41), tail (the same of a group of events e), outer_sums (the sums of both as the metric columns) and columns (their names). A migration that changes the metric list recreates it.';
REVOKE ALL ON FUNCTION tally._usage_sql_parts() FROM PUBLIC, anon, authenticated, service_role;

-- The usage of one account as raw sums per bucket and, optionally, per value of one or more
-- dimensions: the stored rows plus the tail (the public functions finish the metrics).
--   p_unit   hour: the UTC hours in the ranges [p_hours_lo[i], p_hours_hi[i]);
--            day / week (ISO, by its Monday) / none (one row for the whole range): the local
--            days p_from_day..p_to_day; month: the local months starting p_from_day..p_to_day
--   p_groups NULL (totals) or dimensions of tally._rollup_dimensions(): one row per bucket,
--            dimension and value
--   p_split  with unit none, a day inside the range that cuts it in two: the rows of the days
--            before it have day = p_from_day, the others day = p_split (two periods, one read)
CREATE FUNCTION tally._usage_by(p_account_id uuid, p_unit text, p_hours_lo timestamptz[], p_hours_hi timestamptz[],
    p_from_day date, p_to_day date, p_groups text[],
    p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[],
    p_split date DEFAULT NULL)
  RETURNS TABLE (hour timestamptz, day date, dim text, grp text, requests bigint, successful bigint, failed bigint, cached bigint,
                 files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, cost_usd numeric,
                 potential_cost_usd numeric, quantity numeric, unpriced bigint, latency_count bigint,
                 latency_sum numeric, latency_max integer, latency_hist bigint[])
  LANGUAGE plpgsql STABLE
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  SET jit = off
  SET DateStyle = 'ISO'
  AS $fn$
DECLARE
  v_parts     record := tally._usage_sql_parts();
  v_tz        text;
  v_watermark bigint := (SELECT s.watermark FROM tally.rollup_state s);
  -- the filters: the tuple column of each filter argument ($8..$13)
  v_filter_columns constant text[] := ARRAY['api_key_id', 'event_type', 'provider', 'model', 'endpoint', 'file_type'];
  v_filter_dims    constant text[] := ARRAY['api_key', 'event_type', 'provider', 'model', 'endpoint', 'file_type'];
  v_given     boolean[];
  v_nfilters  integer;
  v_only_dim  text;          -- the one dimension filtered, if only one is
  v_by_dim    boolean;       -- read the rows by dimension
  v_stored_from  text;
  v_stored_where text;
  v_tail_from    text := 'tally.events e';
  v_tail_where   text;
  v_stored_bucket text;
  v_tail_bucket   text;
  v_stored_grp text;
  v_tail_grp   text;
  v_dims_values text;
  v_has_tail  boolean;
  v_tail      text := '';
  i           integer;
BEGIN
  SELECT a.timezone INTO v_tz FROM tally.accounts a WHERE a.id = p_account_id;
  v_given := ARRAY[p_api_key_ids IS NOT NULL, p_event_types IS NOT NULL, p_providers IS NOT NULL,
                   p_models IS NOT NULL, p_endpoints IS NOT NULL, p_file_types IS NOT NULL];
  v_nfilters := (SELECT count(*) FROM unnest(v_given) g WHERE g);
  IF v_nfilters = 1 THEN
    v_only_dim := v_filter_dims[array_position(v_given, true)];
  END IF;
  -- the rows by dimension answer: no filter; or one filter, and no grouping or only by that dimension
  v_by_dim := p_unit <> 'hour'
              AND (v_nfilters = 0 OR (v_nfilters = 1 AND (p_groups IS NULL OR p_groups = ARRAY[v_only_dim])));
  IF 'status_class' = ANY (p_groups) AND NOT v_by_dim THEN
    PERFORM tally._raise('invalid_parameter',
      'status_class: the status class is kept per day and month, apart from the filterable dimensions; it takes no filters');
  END IF;

  -- where the stored rows are, and their bucket
  IF p_unit = 'hour' THEN
    v_stored_from := 'unnest($3, $4) AS r(lo, hi) JOIN tally.usage_hourly u ON u.account_id = $1 AND u.bucket >= r.lo AND u.bucket < r.hi';
    v_stored_bucket := 'u.bucket, NULL::date';
    v_stored_where := 'true';
    v_tail_from := 'unnest($3, $4) AS r(lo, hi) JOIN tally.events e ON e.occurred_at >= r.lo AND e.occurred_at < r.hi';
    v_tail_bucket := 'date_trunc(''hour'', e.occurred_at, ''UTC''), NULL::date';
    v_tail_where := 'true';
  ELSE
    v_stored_from := format('tally.%I u', CASE WHEN p_unit = 'month' THEN 'usage_monthly' ELSE 'usage_daily' END
                                          || CASE WHEN v_by_dim THEN '_by_dimension' ELSE '' END);
    v_stored_bucket := CASE
      WHEN p_unit = 'week' THEN 'NULL::timestamptz, u.bucket - (extract(isodow FROM u.bucket)::integer - 1)'
      WHEN p_unit = 'none' AND p_split IS NOT NULL THEN 'NULL::timestamptz, CASE WHEN u.bucket >= $14 THEN $14 ELSE $5 END'
      WHEN p_unit = 'none' THEN 'NULL::timestamptz, NULL::date'
      ELSE 'NULL::timestamptz, u.bucket' END;
    v_stored_where := 'u.account_id = $1 AND u.bucket BETWEEN $5 AND $6';
    v_tail_bucket := CASE
      WHEN p_unit = 'month' THEN format('NULL::timestamptz, date_trunc(''month'', e.occurred_at AT TIME ZONE %L)::date', v_tz)
      WHEN p_unit = 'week' THEN format('NULL::timestamptz, (e.occurred_at AT TIME ZONE %1$L)::date - (extract(isodow FROM e.occurred_at AT TIME ZONE %1$L)::integer - 1)', v_tz)
      WHEN p_unit = 'none' AND p_split IS NOT NULL THEN 'NULL::timestamptz, CASE WHEN e.occurred_at >= $16 THEN $14 ELSE $5 END'
      WHEN p_unit = 'none' THEN 'NULL::timestamptz, NULL::date'
      ELSE format('NULL::timestamptz, (e.occurred_at AT TIME ZONE %L)::date', v_tz) END;
    -- the local days (months) of the range as one instant range (local dates never go back
    -- as time goes on), so no event's local date is computed to filter it
    v_tail_where := 'e.occurred_at >= $15 AND e.occurred_at < $17';
  END IF;

  -- filters and grouping
  SELECT string_agg(format('(%L, %s)', d.dimension, d.value_sql), ', ' ORDER BY d.ord) INTO v_dims_values
  FROM tally._rollup_dimensions() d WHERE d.dimension = ANY (p_groups);
  IF v_by_dim THEN
    IF p_groups IS NULL THEN
      v_stored_where := v_stored_where || format(' AND u.dimension = %L', coalesce(v_only_dim, 'event_type'));
      v_stored_grp := 'NULL::text, NULL::text';
    ELSE
      v_stored_where := v_stored_where || ' AND u.dimension = ANY ($7)';
      v_stored_grp := 'u.dimension, u.value';
    END IF;
    IF v_only_dim IS NOT NULL THEN
      v_stored_where := v_stored_where || format(' AND u.value = ANY ($%s::text[])', 7 + array_position(v_given, true));
    END IF;
  ELSE
    FOR i IN 1..6 LOOP
      IF v_given[i] THEN
        v_stored_where := v_stored_where || format(' AND u.%I = ANY ($%s)', v_filter_columns[i], 7 + i);
      END IF;
    END LOOP;
    IF p_groups IS NULL THEN
      v_stored_grp := 'NULL::text, NULL::text';
    ELSE
      v_stored_from := v_stored_from || format(' CROSS JOIN LATERAL (VALUES %s) AS d(dimension, value)', replace(v_dims_values, 'b.', 'u.'));
      v_stored_grp := 'd.dimension, d.value';
    END IF;
  END IF;
  FOR i IN 1..6 LOOP
    IF v_given[i] THEN
      v_tail_where := v_tail_where || format(' AND e.%I = ANY ($%s)', v_filter_columns[i], 7 + i);
    END IF;
  END LOOP;
  IF p_groups IS NULL THEN
    v_tail_grp := 'NULL::text, NULL::text';
  ELSE
    v_tail_from := v_tail_from || format(' CROSS JOIN LATERAL (VALUES %s) AS d(dimension, value)',
                                         replace(replace(v_dims_values, 'b.status_class', tally._status_class_sql('e')), 'b.', 'e.'));
    v_tail_grp := 'd.dimension, d.value';
  END IF;

  -- the tail, if this account has one: events past the watermark, grouped the same way
  -- (the watermark goes in as a constant, so the planner reads the few ids above it by index)
  EXECUTE format('SELECT EXISTS (SELECT 1 FROM tally.events e WHERE e.id > %s AND e.account_id = $1)', v_watermark)
  INTO v_has_tail USING p_account_id;
  IF v_has_tail THEN
    v_tail := format($t$
        UNION ALL
        SELECT %1$s, %2$s, %3$s
        FROM %4$s
        WHERE e.account_id = $1 AND e.id > %5$s AND %6$s
          AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
        GROUP BY 1, 2, 3, 4$t$,
      v_tail_bucket, v_tail_grp, v_parts.tail, v_tail_from, v_watermark, v_tail_where);
  END IF;

  RETURN QUERY EXECUTE format($q$
    SELECT y.hour, y.day, y.dim, y.grp, y.requests, y.successful, y.failed, y.cached, y.files, y.bytes, y.tokens_in, y.tokens_out,
           y.cost_usd, y.potential_cost_usd, y.quantity, y.unpriced, y.latency_count, y.latency_sum, y.latency_max, y.latency_hist
    FROM (
      SELECT x.hour, x.day, x.dim, x.grp, %1$s
      FROM (
        SELECT %2$s, %3$s, %4$s
        FROM %5$s
        WHERE %6$s%7$s
      ) x(hour, day, dim, grp, %8$s)
      GROUP BY x.hour, x.day, x.dim, x.grp
    ) y$q$,
    v_parts.outer_sums, v_stored_bucket, v_stored_grp, v_parts.stored, v_stored_from, v_stored_where,
    v_tail, v_parts.columns)
  USING p_account_id, p_unit, p_hours_lo, p_hours_hi, p_from_day, p_to_day, p_groups,
        p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types,
        p_split,
        -- the instants of the local range: its first, the split's and the one after its last
        CASE WHEN p_unit <> 'hour' THEN tally._local_start(p_from_day::timestamp, v_tz) END,
        CASE WHEN p_split IS NOT NULL THEN tally._local_start(p_split::timestamp, v_tz) END,
        CASE WHEN p_unit <> 'hour'
             THEN tally._local_start((p_to_day + CASE WHEN p_unit = 'month' THEN interval '1 month' ELSE interval '1 day' END)::timestamp, v_tz) END;
END
$fn$;
COMMENT ON FUNCTION tally._usage_by(uuid, text, timestamptz[], timestamptz[], date, date, text[], uuid[], text[], text[], text[], text[], text[], date) IS
  'The usage of one account as raw sums (and a 42-slot latency histogram) per bucket and, if p_groups names dimensions, per dimension and value: the stored aggregates plus the unfolded tail. p_unit hour: the UTC hours in the ranges [p_hours_lo[i], p_hours_hi[i]); day, week (ISO, by its Monday), none (one row for the range; with p_split, two: day p_from_day for the days before p_split, day p_split for the rest): local days p_from_day..p_to_day; month: local months starting p_from_day..p_to_day. Filters are ANDed lists (NULL: none). Reads the rows by dimension when they can answer, else the rows per tuple. Callers check access and arguments first.';
REVOKE ALL ON FUNCTION tally._usage_by(uuid, text, timestamptz[], timestamptz[], date, date, text[], uuid[], text[], text[], text[], text[], text[], date) FROM PUBLIC, anon, authenticated, service_role;

-- The usage of one account in exact instant ranges [p_lo[i], p_hi[i]) (each at most 400
-- days), one row per range (idx = i): whole local days from the daily rows, the whole UTC
-- hours left from the hourly rows, and the pieces of hours at the edges (under an hour
-- each) from the raw events. Raw sums, as tally._usage_by.
CREATE FUNCTION tally._usage_between(p_account_id uuid, p_lo timestamptz[], p_hi timestamptz[],
    p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[])
  RETURNS TABLE (idx integer, requests bigint, successful bigint, failed bigint, cached bigint,
                 files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, cost_usd numeric,
                 potential_cost_usd numeric, quantity numeric, unpriced bigint, latency_count bigint,
                 latency_sum numeric, latency_max integer, latency_hist bigint[])
  LANGUAGE plpgsql STABLE
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  SET jit = off
  AS $fn$
DECLARE
  v_parts   record := tally._usage_sql_parts();
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
  v_filters text := '';
  v_columns constant text[] := ARRAY['api_key_id', 'event_type', 'provider', 'model', 'endpoint', 'file_type'];
  v_given   boolean[];
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

  v_given := ARRAY[p_api_key_ids IS NOT NULL, p_event_types IS NOT NULL, p_providers IS NOT NULL,
                   p_models IS NOT NULL, p_endpoints IS NOT NULL, p_file_types IS NOT NULL];
  FOR v_i IN 1..6 LOOP
    IF v_given[v_i] THEN
      v_filters := v_filters || format(' AND e.%I = ANY ($%s)', v_columns[v_i], 10 + v_i);
    END IF;
  END LOOP;

  RETURN QUERY EXECUTE format($q$
    SELECT y.idx, y.requests, y.successful, y.failed, y.cached, y.files, y.bytes, y.tokens_in, y.tokens_out,
           y.cost_usd, y.potential_cost_usd, y.quantity, y.unpriced, y.latency_count, y.latency_sum, y.latency_max, y.latency_hist
    FROM (
      SELECT x.idx, %1$s
      FROM (
        -- whole days
        SELECT d.idx, %2$s
        FROM unnest($2::integer[], $3::date[], $4::date[]) AS d(idx, from_day, to_day)
        JOIN (SELECT r.day, %4$s
              FROM tally._usage_by($1, 'day', NULL, NULL, (SELECT min(f) FROM unnest($3::date[]) f), (SELECT max(t) FROM unnest($4::date[]) t), NULL,
                                   $11, $12, $13, $14, $15, $16) r
              WHERE cardinality($2::integer[]) > 0) u ON u.day BETWEEN d.from_day AND d.to_day
        UNION ALL
        -- whole hours
        SELECT h.idx, %2$s
        FROM unnest($5::integer[], $6::timestamptz[], $7::timestamptz[]) AS h(idx, lo, hi)
        JOIN (SELECT r.hour, %4$s
              FROM tally._usage_by($1, 'hour', $6, $7, NULL, NULL, NULL, $11, $12, $13, $14, $15, $16) r
              WHERE cardinality($5::integer[]) > 0) u ON u.hour >= h.lo AND u.hour < h.hi
        UNION ALL
        -- the pieces of hours, from the raw events (folded or not)
        SELECT r.idx, %3$s
        FROM unnest($8::integer[], $9::timestamptz[], $10::timestamptz[]) AS r(idx, lo, hi)
        -- one index range per piece (a join would read all the account's events once)
        CROSS JOIN LATERAL (
          SELECT e.* FROM tally.events e
          WHERE e.account_id = $1 AND e.occurred_at >= r.lo AND e.occurred_at < r.hi
            AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)%5$s
        ) e
        GROUP BY r.idx
      ) x(idx, %6$s)
      GROUP BY x.idx
    ) y$q$,
    v_parts.outer_sums, v_parts.stored, v_parts.tail,
    -- a row of tally._usage_by as the columns of a stored row
    'r.requests, r.successful, r.failed, r.cached, r.files, r.bytes, r.tokens_in, r.tokens_out, r.cost_usd, r.potential_cost_usd, '
    'r.quantity, r.latency_count, r.latency_sum, r.latency_max, r.latency_hist, r.unpriced',
    v_filters, v_parts.columns)
  USING p_account_id, v_day_idx, v_day_from, v_day_to, v_hour_idx, v_hour_lo, v_hour_hi, v_raw_idx, v_raw_lo, v_raw_hi,
        p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types;
END
$fn$;
COMMENT ON FUNCTION tally._usage_between(uuid, timestamptz[], timestamptz[], uuid[], text[], text[], text[], text[], text[]) IS
  'The usage of one account in exact instant ranges [p_lo[i], p_hi[i]), one row per range with events (idx = i), as raw sums: whole local days from the daily aggregates, the remaining whole UTC hours from the hourly ones (both with the tail), and the pieces of hours at the edges from the raw events. Callers check access and arguments first.';
REVOKE ALL ON FUNCTION tally._usage_between(uuid, timestamptz[], timestamptz[], uuid[], text[], text[], text[], text[], text[]) FROM PUBLIC, anon, authenticated, service_role;

-- p50, p95 and p99 of a latency histogram at once, as tally.histogram_percentile gives each
-- (same nearest-rank estimate), rounded to 2 decimals; NULL for an empty one.
CREATE FUNCTION tally._latency_percentiles(p_hist bigint[], p_latency_max integer,
    OUT p50 numeric, OUT p95 numeric, OUT p99 numeric)
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_bounds constant integer[] := tally.latency_buckets();
  v_n      numeric := 0;
  v_ranks  numeric[];
  v_out    numeric[] := ARRAY[NULL, NULL, NULL]::numeric[];
  v_seen   numeric := 0;
  v_j      integer := 1;
  v_lo     numeric;
  v_hi     numeric;
BEGIN
  IF p_hist IS NULL OR cardinality(p_hist) <> 42 THEN
    RETURN;
  END IF;
  FOR k IN 1..42 LOOP
    v_n := v_n + p_hist[k];
  END LOOP;
  IF v_n = 0 THEN
    RETURN;
  END IF;
  v_ranks := ARRAY[greatest(1, ceil(0.50 * v_n)), greatest(1, ceil(0.95 * v_n)), greatest(1, ceil(0.99 * v_n))];
  FOR k IN 0..41 LOOP
    v_seen := v_seen + p_hist[k + 1];
    WHILE v_j <= 3 AND v_seen >= v_ranks[v_j] LOOP
      IF v_ranks[v_j] = v_n AND p_latency_max IS NOT NULL THEN
        v_out[v_j] := p_latency_max;  -- the largest latency is known exactly
      ELSE
        v_lo := CASE WHEN k = 0 THEN 0 ELSE v_bounds[k] END;
        v_hi := CASE WHEN k = 41 THEN NULL ELSE v_bounds[k + 1] - 1 END;
        IF p_latency_max IS NOT NULL THEN
          v_hi := greatest(v_lo, least(coalesce(v_hi, p_latency_max), p_latency_max));
        END IF;
        v_out[v_j] := CASE WHEN v_hi IS NULL THEN v_lo
                           WHEN v_lo + v_hi = 0 THEN 0
                           ELSE round((2 * v_lo * v_hi / (v_lo + v_hi))::double precision::numeric, 2) END;
      END IF;
      v_j := v_j + 1;
    END LOOP;
  END LOOP;
  p50 := v_out[1];
  p95 := v_out[2];
  p99 := v_out[3];
END
$$;
COMMENT ON FUNCTION tally._latency_percentiles(bigint[], integer) IS
  'p50, p95 and p99 (ms, 2 decimals) of a 42-slot latency histogram in one pass, each the estimate tally.histogram_percentile gives (latency_max bounds the top slot); NULL when empty.';
REVOKE ALL ON FUNCTION tally._latency_percentiles(bigint[], integer) FROM PUBLIC, anon, authenticated, service_role;

-- The metric columns of the public functions from raw sums r (NULL sums: an empty bucket).
CREATE FUNCTION tally._usage_metrics_sql(p_alias text) RETURNS text
  LANGUAGE sql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  AS $$
    select format($m$
      coalesce(%1$I.requests, 0)::bigint AS requests, coalesce(%1$I.successful, 0)::bigint AS successful,
      coalesce(%1$I.failed, 0)::bigint AS failed, coalesce(%1$I.cached, 0)::bigint AS cached,
      CASE WHEN coalesce(%1$I.requests, 0) > 0 THEN round(100.0 * %1$I.cached / %1$I.requests, 2) ELSE 0.00 END AS cache_hit_pct,
      coalesce(%1$I.files, 0) AS files, coalesce(%1$I.bytes, 0) AS bytes,
      coalesce(%1$I.tokens_in, 0) AS tokens_in, coalesce(%1$I.tokens_out, 0) AS tokens_out,
      coalesce(%1$I.tokens_in, 0) + coalesce(%1$I.tokens_out, 0) AS tokens_total,
      coalesce(%1$I.cost_usd, 0) AS cost_usd, coalesce(%1$I.potential_cost_usd, 0) AS potential_cost_usd,
      coalesce(%1$I.potential_cost_usd, 0) - coalesce(%1$I.cost_usd, 0) AS savings_usd,
      coalesce(%1$I.quantity, 0) AS quantity, coalesce(%1$I.unpriced, 0)::bigint AS unpriced,
      round(%1$I.latency_sum / nullif(%1$I.latency_count, 0), 2) AS avg_latency_ms,
      %2$I.p50 AS p50_latency_ms, %2$I.p95 AS p95_latency_ms, %2$I.p99 AS p99_latency_ms$m$, p_alias, p_alias || '_pct')
  $$;
COMMENT ON FUNCTION tally._usage_metrics_sql(text) IS
  'The metric columns of the dashboard functions (requests .. p99_latency_ms), as SQL over the raw sums of the given alias r (a row of tally._usage_by) and its percentiles r_pct (CROSS JOIN LATERAL tally._latency_percentiles(r.latency_hist, r.latency_max) AS r_pct).';
REVOKE ALL ON FUNCTION tally._usage_metrics_sql(text) FROM PUBLIC, anon, authenticated, service_role;

-- The caller may read the account: a service caller (when it exists), or a member, any role.
CREATE FUNCTION tally._require_usage_reader(p_account_id uuid, OUT timezone text)
  LANGUAGE plpgsql STABLE
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  AS $$
BEGIN
  PERFORM tally._require_account_role(p_account_id, 'viewer');
  SELECT a.timezone INTO timezone FROM tally.accounts a WHERE a.id = p_account_id;
END
$$;
COMMENT ON FUNCTION tally._require_usage_reader(uuid) IS
  'Guard of the dashboard functions: service callers for an existing account (else account_not_found), members of it with any role, anyone else forbidden (42501); returns the account''s time zone.';
REVOKE ALL ON FUNCTION tally._require_usage_reader(uuid) FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- get_usage_series
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION tally.get_usage_series(p_account_id uuid, p_from timestamptz, p_to timestamptz,
    p_granularity text DEFAULT 'day',
    p_api_key_ids uuid[] DEFAULT NULL, p_event_types text[] DEFAULT NULL, p_providers text[] DEFAULT NULL,
    p_models text[] DEFAULT NULL, p_endpoints text[] DEFAULT NULL, p_file_types text[] DEFAULT NULL)
  RETURNS TABLE (bucket_start timestamptz, bucket_end timestamptz, local_date date,
                 requests bigint, successful bigint, failed bigint, cached bigint, cache_hit_pct numeric,
                 files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, tokens_total numeric,
                 cost_usd numeric, potential_cost_usd numeric, savings_usd numeric, quantity numeric, unpriced bigint,
                 avg_latency_ms numeric, p50_latency_ms numeric, p95_latency_ms numeric, p99_latency_ms numeric)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  SET jit = off
  AS $fn$
DECLARE
  v_tz       text := tally._require_usage_reader(p_account_id);
  v_from_day date;
  v_to_day   date;
  v_lo       timestamptz;
  v_hi       timestamptz;
  v_step     interval;
BEGIN
  PERFORM tally._check_usage_filters(p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types);
  IF p_from IS NULL OR p_to IS NULL THEN
    PERFORM tally._raise('invalid_parameter', 'from, to: both are required');
  ELSIF p_from >= p_to THEN
    PERFORM tally._raise('invalid_parameter', format('from: must be before to (got %s .. %s)', p_from, p_to));
  ELSIF p_granularity IS NULL OR p_granularity NOT IN ('hour', 'day', 'week', 'month') THEN
    PERFORM tally._raise('invalid_parameter', format('granularity: must be hour, day, week or month (got %s)', coalesce(p_granularity, 'NULL')));
  ELSIF (p_granularity = 'hour' AND p_to - p_from > interval '31 days')
     OR (p_granularity = 'day' AND p_to - p_from > interval '3660 days')
     OR (p_granularity = 'week' AND p_to - p_from > interval '3640 days')
     OR (p_granularity = 'month' AND p_to > p_from + interval '120 months') THEN
    PERFORM tally._raise('invalid_parameter', format('from, to: at most %s at granularity %s',
      CASE p_granularity WHEN 'hour' THEN '31 days' WHEN 'day' THEN '3660 days' WHEN 'week' THEN '520 weeks' ELSE '120 months' END, p_granularity));
  END IF;

  IF p_granularity = 'hour' THEN
    v_lo := date_trunc('hour', p_from, 'UTC');
    v_hi := date_trunc('hour', p_to - interval '1 microsecond', 'UTC') + interval '1 hour';
    IF v_lo < date_trunc('hour', tally._retention_floor('hourly'), 'UTC') THEN
      PERFORM tally._raise('past_retention', format('from: hourly usage before %s is past retention (setting retention.hourly); ask by day',
                                                    date_trunc('hour', tally._retention_floor('hourly'), 'UTC')));
    END IF;
    RETURN QUERY EXECUTE format($q$
      SELECT g.h, g.h + interval '1 hour', (g.h AT TIME ZONE %1$L)::date, %2$s
      FROM generate_series($1, $2 - interval '1 hour', interval '1 hour') AS g(h)
      LEFT JOIN tally._usage_by($3, 'hour', ARRAY[$1], ARRAY[$2], NULL, NULL, NULL, $4, $5, $6, $7, $8, $9) r ON r.hour = g.h
      CROSS JOIN LATERAL tally._latency_percentiles(r.latency_hist, r.latency_max) AS r_pct
      ORDER BY g.h$q$, v_tz, tally._usage_metrics_sql('r'))
    USING v_lo, v_hi, p_account_id, p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types;
    RETURN;
  END IF;

  v_from_day := (p_from AT TIME ZONE v_tz)::date;
  v_to_day := ((p_to - interval '1 microsecond') AT TIME ZONE v_tz)::date;
  IF p_granularity = 'week' THEN
    v_from_day := v_from_day - (extract(isodow FROM v_from_day)::integer - 1);
    v_to_day := v_to_day - (extract(isodow FROM v_to_day)::integer - 1);
    v_step := interval '7 days';
  ELSIF p_granularity = 'month' THEN
    v_from_day := date_trunc('month', v_from_day)::date;
    v_to_day := date_trunc('month', v_to_day)::date;
    v_step := interval '1 month';
  ELSE
    v_step := interval '1 day';
  END IF;
  IF p_granularity <> 'month' AND v_from_day < tally._retention_floor('daily')::date THEN
    PERFORM tally._raise('past_retention', format('from: daily usage before %s is past retention (setting retention.daily); ask by month',
                                                  tally._retention_floor('daily')::date));
  END IF;
  RETURN QUERY EXECUTE format($q$
    SELECT tally._local_start(g.d::timestamp, %1$L), tally._local_start((g.d + $3)::timestamp, %1$L), g.d, %2$s
    FROM (SELECT s::date AS d FROM generate_series($1::timestamp, $2::timestamp, $3) AS s) g
    LEFT JOIN tally._usage_by($4, $5, NULL, NULL, $1,
                              CASE WHEN $5 = 'week' THEN $2 + 6 ELSE $2 END, NULL, $6, $7, $8, $9, $10, $11) r ON r.day = g.d
    CROSS JOIN LATERAL tally._latency_percentiles(r.latency_hist, r.latency_max) AS r_pct
    ORDER BY g.d$q$, v_tz, tally._usage_metrics_sql('r'))
  USING v_from_day, v_to_day, v_step, p_account_id, p_granularity,
        p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types;
END
$fn$;
COMMENT ON FUNCTION tally.get_usage_series(uuid, timestamptz, timestamptz, text, uuid[], text[], text[], text[], text[], text[]) IS
  'Usage of an account over time, gap-filled: one row per bucket overlapping [p_from, p_to), whole, oldest first, at granularity hour (UTC hours), day (the account''s local days), week (ISO weeks from Monday, local) or month (local months), with every metric (requests, successful, failed, cached, cache_hit_pct, files, bytes, tokens_in/out/total, cost_usd, potential_cost_usd, savings_usd, quantity, unpriced, avg/p50/p95/p99 latency in ms). Exact at any moment (the unfolded tail included). Filters: lists of API key ids, event types, providers, models, endpoints, file types (NULL: no filter; ANDed). At most 31 days by hour, 3660 days by day, 520 weeks, 120 months. Errors: invalid_parameter, past_retention (22023); forbidden (42501) for a non-member. Members of the account and service callers.';

-- ---------------------------------------------------------------------------------------
-- get_breakdown
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION tally._check_day_range(p_from date, p_to date) RETURNS void
  LANGUAGE plpgsql STABLE
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  AS $$
BEGIN
  IF p_from IS NULL OR p_to IS NULL THEN
    PERFORM tally._raise('invalid_parameter', 'from, to: both are required (local calendar days, both included)');
  ELSIF p_from > p_to THEN
    PERFORM tally._raise('invalid_parameter', format('from: must not be after to (got %s .. %s)', p_from, p_to));
  ELSIF p_to - p_from >= 3660 THEN
    PERFORM tally._raise('invalid_parameter', format('from, to: at most 3660 days (got %s)', p_to - p_from + 1));
  ELSIF p_from < tally._retention_floor('daily')::date THEN
    PERFORM tally._raise('past_retention', format('from: daily usage before %s is past retention (setting retention.daily)',
                                                  tally._retention_floor('daily')::date));
  END IF;
END
$$;
COMMENT ON FUNCTION tally._check_day_range(date, date) IS
  'Raises invalid_parameter unless p_from <= p_to (local days, both included) within 3660 days, and past_retention when p_from is before the daily rows kept (retention.daily).';
REVOKE ALL ON FUNCTION tally._check_day_range(date, date) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.get_breakdown(p_account_id uuid, p_dimension text, p_from date, p_to date,
    p_api_key_ids uuid[] DEFAULT NULL, p_event_types text[] DEFAULT NULL, p_providers text[] DEFAULT NULL,
    p_models text[] DEFAULT NULL, p_endpoints text[] DEFAULT NULL, p_file_types text[] DEFAULT NULL,
    p_limit integer DEFAULT 10, p_measure text DEFAULT 'requests')
  RETURNS TABLE (rank integer, value text, label text, is_other boolean, share_pct numeric,
                 requests bigint, successful bigint, failed bigint, cached bigint, cache_hit_pct numeric,
                 files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, tokens_total numeric,
                 cost_usd numeric, potential_cost_usd numeric, savings_usd numeric, quantity numeric, unpriced bigint,
                 avg_latency_ms numeric, p50_latency_ms numeric, p95_latency_ms numeric, p99_latency_ms numeric)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  SET jit = off
  AS $fn$
DECLARE
  v_tz text := tally._require_usage_reader(p_account_id);
BEGIN
  PERFORM tally._check_usage_filters(p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types);
  IF p_dimension IS NULL OR p_dimension NOT IN (SELECT d.dimension FROM tally._rollup_dimensions() d) THEN
    PERFORM tally._raise('invalid_parameter', format('dimension: must be one of %s (got %s)',
      (SELECT string_agg(d.dimension, ', ' ORDER BY d.ord) FROM tally._rollup_dimensions() d), coalesce(p_dimension, 'NULL')));
  ELSIF p_measure IS NULL OR p_measure NOT IN ('requests', 'cost', 'bytes', 'tokens') THEN
    PERFORM tally._raise('invalid_parameter', format('measure: must be requests, cost, bytes or tokens (got %s)', coalesce(p_measure, 'NULL')));
  ELSIF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
    PERFORM tally._raise('invalid_parameter', format('limit: must be from 1 to 1000 (got %s)', coalesce(p_limit::text, 'NULL')));
  END IF;
  PERFORM tally._check_day_range(p_from, p_to);

  RETURN QUERY EXECUTE format($q$
    WITH r AS (
      SELECT u.*, CASE $4 WHEN 'requests' THEN u.requests::numeric WHEN 'cost' THEN u.cost_usd WHEN 'bytes' THEN u.bytes
                          ELSE u.tokens_in + u.tokens_out END AS measure
      FROM tally._usage_by($1, 'none', NULL, NULL, $2, $3, ARRAY[$5], $7, $8, $9, $10, $11, $12) u
    ),
    ranked AS (
      SELECT r.*, row_number() OVER (ORDER BY r.measure DESC, r.grp ASC NULLS LAST) AS rn FROM r
    ),
    folded AS (
      -- the first p_limit values, and one 'other' row for the rest
      SELECT least(k.rn, $6 + 1)::integer AS rank, min(k.grp) FILTER (WHERE k.rn <= $6) AS value, bool_or(k.rn > $6) AS is_other,
             sum(k.measure) AS measure,
             sum(k.requests) AS requests, sum(k.successful) AS successful, sum(k.failed) AS failed, sum(k.cached) AS cached,
             sum(k.files) AS files, sum(k.bytes) AS bytes, sum(k.tokens_in) AS tokens_in, sum(k.tokens_out) AS tokens_out,
             sum(k.cost_usd) AS cost_usd, sum(k.potential_cost_usd) AS potential_cost_usd, sum(k.quantity) AS quantity,
             sum(k.unpriced) AS unpriced, sum(k.latency_count) AS latency_count, sum(k.latency_sum) AS latency_sum,
             max(k.latency_max) AS latency_max, tally._hist_sum(k.latency_hist) AS latency_hist
      FROM ranked k
      GROUP BY 1
    ),
    shares AS (
      -- shares in hundredths of a percent, floored, then the shortfall to exactly 100.00 given
      -- one hundredth each to the largest remainders (largest-remainder rounding)
      SELECT f.*, t.total,
             CASE WHEN t.total > 0 THEN floor(f.measure * 10000 / t.total) ELSE 0 END AS units,
             CASE WHEN t.total > 0 THEN f.measure * 10000 / t.total - floor(f.measure * 10000 / t.total) ELSE 0 END AS remainder
      FROM folded f CROSS JOIN (SELECT sum(measure) AS total FROM folded) t
    ),
    rounded AS (
      SELECT s.*, row_number() OVER (ORDER BY s.remainder DESC, s.rank) AS by_remainder,
             CASE WHEN s.total > 0 THEN 10000 - sum(s.units) OVER () ELSE 0 END AS shortfall
      FROM shares s
    )
    SELECT r.rank, r.value,
           CASE WHEN r.is_other THEN 'other' WHEN r.value IS NULL THEN '(none)' ELSE coalesce(k.name, r.value) END,
           r.is_other,
           ((r.units + CASE WHEN r.by_remainder <= r.shortfall THEN 1 ELSE 0 END) / 100.0)::numeric(5, 2),
           %1$s
    FROM rounded r
    LEFT JOIN tally.api_keys k ON $5 = 'api_key' AND k.account_id = $1 AND k.id::text = r.value
    CROSS JOIN LATERAL tally._latency_percentiles(r.latency_hist, r.latency_max) AS r_pct
    ORDER BY r.rank$q$, tally._usage_metrics_sql('r'))
  USING p_account_id, p_from, p_to, p_measure, p_dimension, p_limit,
        p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types;
END
$fn$;
COMMENT ON FUNCTION tally.get_breakdown(uuid, text, date, date, uuid[], text[], text[], text[], text[], text[], integer, text) IS
  'Usage of an account over local days p_from..p_to (both included) by value of one dimension (provider, model, endpoint, file_type, api_key, event_type, status_class), ranked by the measure (requests, cost, bytes or tokens) descending: the first p_limit (1..1000) values, then one row (is_other, label other) for the rest; events without the dimension are the row with value NULL (label (none)). share_pct: each row''s share of the measure, 2 decimals, summing to exactly 100.00 (largest-remainder rounding; all 0 when the total is 0). label: the API key''s name for api_key, else the value. Every metric of get_usage_series. Filters as get_usage_series (status_class takes none). Exact at any moment. Errors: invalid_parameter, past_retention (22023); forbidden (42501). Members of the account and service callers.';

-- ---------------------------------------------------------------------------------------
-- get_top_endpoints
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION tally.get_top_endpoints(p_account_id uuid, p_from date, p_to date, p_limit integer DEFAULT 10,
    p_order_by text DEFAULT 'requests',
    p_api_key_ids uuid[] DEFAULT NULL, p_event_types text[] DEFAULT NULL, p_providers text[] DEFAULT NULL,
    p_models text[] DEFAULT NULL, p_endpoints text[] DEFAULT NULL, p_file_types text[] DEFAULT NULL)
  RETURNS TABLE (rank integer, endpoint text, requests bigint, successful bigint, failed bigint, error_pct numeric,
                 cost_usd numeric, avg_latency_ms numeric, p95_latency_ms numeric, previous_rank integer, rank_change integer,
                 previous_requests bigint, previous_cost_usd numeric, requests_change_pct numeric)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  SET jit = off
  AS $fn$
DECLARE
  v_tz        text := tally._require_usage_reader(p_account_id);
  v_prev_from date;
BEGIN
  PERFORM tally._check_usage_filters(p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types);
  IF p_order_by IS NULL OR p_order_by NOT IN ('requests', 'cost') THEN
    PERFORM tally._raise('invalid_parameter', format('order_by: must be requests or cost (got %s)', coalesce(p_order_by, 'NULL')));
  ELSIF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
    PERFORM tally._raise('invalid_parameter', format('limit: must be from 1 to 1000 (got %s)', coalesce(p_limit::text, 'NULL')));
  END IF;
  PERFORM tally._check_day_range(p_from, p_to);
  -- the previous period: as many days right before; the part past daily retention is not read
  v_prev_from := greatest(p_from - (p_to - p_from + 1), tally._retention_floor('daily')::date);

  RETURN QUERY
  WITH periods AS (
    -- both periods in one read: the rows of the days before p_from come back as day v_prev_from
    SELECT u.day = p_from AS current, u.grp AS endpoint, u.requests, u.successful, u.failed, u.cost_usd,
           u.latency_count, u.latency_sum, u.latency_max, u.latency_hist
    FROM tally._usage_by(p_account_id, 'none', NULL, NULL, v_prev_from, p_to, ARRAY['endpoint'],
                         p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types, p_from) u
    WHERE u.grp IS NOT NULL
  ),
  ranked AS (
    SELECT p.*, row_number() OVER (PARTITION BY p.current
                                   ORDER BY CASE WHEN p_order_by = 'cost' THEN p.cost_usd ELSE p.requests END DESC, p.endpoint)::integer AS rn
    FROM periods p
  )
  SELECT c.rn, c.endpoint, c.requests, c.successful, c.failed,
         CASE WHEN c.requests > 0 THEN round(100.0 * c.failed / c.requests, 2) ELSE 0.00 END,
         c.cost_usd, round(c.latency_sum / nullif(c.latency_count, 0), 2), pct.p95,
         p.rn, p.rn - c.rn, coalesce(p.requests, 0)::bigint, coalesce(p.cost_usd, 0),
         CASE WHEN coalesce(p.requests, 0) > 0 THEN round(100.0 * (c.requests - p.requests) / p.requests, 2) END
  FROM ranked c
  LEFT JOIN ranked p ON NOT p.current AND p.endpoint = c.endpoint
  CROSS JOIN LATERAL tally._latency_percentiles(c.latency_hist, c.latency_max) AS pct
  WHERE c.current AND c.rn <= p_limit
  ORDER BY c.rn;
END
$fn$;
COMMENT ON FUNCTION tally.get_top_endpoints(uuid, date, date, integer, text, uuid[], text[], text[], text[], text[], text[]) IS
  'The top p_limit (1..1000) endpoints of an account over local days p_from..p_to (both included), ranked (row_number) by requests or cost (p_order_by) descending, ties by endpoint: requests, successful, failed, error_pct, cost_usd, avg and p95 latency; and against the previous period of as many days right before: previous_rank (over all its endpoints; NULL if absent), rank_change = previous_rank - rank (positive: moved up), previous_requests, previous_cost_usd, requests_change_pct (NULL when there were none). Events without an endpoint are not ranked. The part of the previous period past retention.daily counts as empty. Filters as get_usage_series. Exact at any moment. Errors: invalid_parameter, past_retention (22023); forbidden (42501). Members of the account and service callers.';

-- ---------------------------------------------------------------------------------------
-- compare_periods
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION tally.compare_periods(p_account_id uuid, p_period text DEFAULT 'month', p_at timestamptz DEFAULT now(),
    p_api_key_ids uuid[] DEFAULT NULL, p_event_types text[] DEFAULT NULL, p_providers text[] DEFAULT NULL,
    p_models text[] DEFAULT NULL, p_endpoints text[] DEFAULT NULL, p_file_types text[] DEFAULT NULL)
  RETURNS TABLE (metric text, current_value numeric, previous_value numeric, change numeric, change_pct numeric,
                 current_from timestamptz, current_to timestamptz, previous_from timestamptz, previous_to timestamptz)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  SET jit = off
  AS $fn$
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
    PERFORM tally._raise('invalid_parameter', format('period: must be day, week or month (got %s)', coalesce(p_period, 'NULL')));
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
    PERFORM tally._raise('past_retention', format('at: the previous %s starts before %s, where hourly usage is past retention (setting retention.hourly)',
                                                  p_period, date_trunc('hour', tally._retention_floor('hourly'), 'UTC')));
  END IF;

  RETURN QUERY EXECUTE format($q$
    WITH sums AS (
      SELECT i.idx, %1$s
      FROM unnest(ARRAY[1, 2]) AS i(idx)
      LEFT JOIN tally._usage_between($1, ARRAY[$2, $4], ARRAY[$3, $5], $6, $7, $8, $9, $10, $11) r ON r.idx = i.idx
      CROSS JOIN LATERAL tally._latency_percentiles(r.latency_hist, r.latency_max) AS r_pct
    )
    SELECT m.metric, m.cur, m.prev, m.cur - m.prev,
           CASE WHEN m.prev IS NOT NULL AND m.prev <> 0 THEN round(100 * (m.cur - m.prev) / abs(m.prev), 2) END,
           $2, $3, $4, $5
    FROM (SELECT * FROM sums WHERE idx = 1) c CROSS JOIN (SELECT * FROM sums WHERE idx = 2) p
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
    ORDER BY m.ord$q$, tally._usage_metrics_sql('r'))
  USING p_account_id, v_cur_from, p_at, v_prev_from, v_prev_to,
        p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types;
END
$fn$;
COMMENT ON FUNCTION tally.compare_periods(uuid, text, timestamptz, uuid[], text[], text[], text[], text[], text[]) IS
  'This period so far against the same span of the previous one, in the account''s calendar: current = [start of the local day, ISO week (Monday) or month holding p_at, p_at); previous = [start of the period before, that start + the same elapsed time), capped at the current start. One row per metric of get_usage_series (same names, same order): current_value, previous_value, change, change_pct (NULL when the previous value is 0 or NULL), with both ranges. Exact to the instant: whole days from the daily rows, whole hours from the hourly rows, the pieces of hours from the raw events (the tail included). Filters as get_usage_series. Errors: invalid_parameter, past_retention (22023); forbidden (42501). Members of the account and service callers.';

-- ---------------------------------------------------------------------------------------
-- get_period_summary, get_usage_history
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION tally.get_period_summary(p_account_id uuid, p_month date DEFAULT NULL)
  RETURNS TABLE (month date, period_start timestamptz, period_end timestamptz, as_of timestamptz, elapsed_pct numeric,
                 requests bigint, successful bigint, failed bigint, cached bigint, cache_hit_pct numeric,
                 files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, tokens_total numeric,
                 cost_usd numeric, potential_cost_usd numeric, savings_usd numeric, quantity numeric, unpriced bigint,
                 avg_latency_ms numeric, p50_latency_ms numeric, p95_latency_ms numeric, p99_latency_ms numeric,
                 savings_pct numeric, forecast_requests bigint, forecast_cost_usd numeric, forecast_method text)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  SET jit = off
  AS $fn$
DECLARE
  v_tz    text := tally._require_usage_reader(p_account_id);
  v_month date;
  v_start timestamptz;
  v_end   timestamptz;
BEGIN
  v_month := date_trunc('month', coalesce(p_month, (now() AT TIME ZONE v_tz)::date))::date;
  v_start := tally._local_start(v_month::timestamp, v_tz);
  v_end := tally._local_start(v_month + interval '1 month', v_tz);
  IF v_start > now() THEN
    PERFORM tally._raise('invalid_parameter', format('month: %s has not started yet', to_char(v_month, 'YYYY-MM')));
  END IF;

  RETURN QUERY EXECUTE format($q$
    SELECT s.month, s.period_start, s.period_end, s.as_of,
           round(100 * extract(epoch FROM s.as_of - s.period_start) / extract(epoch FROM s.period_end - s.period_start), 2),
           s.requests, s.successful, s.failed, s.cached, s.cache_hit_pct, s.files, s.bytes, s.tokens_in, s.tokens_out,
           s.tokens_total, s.cost_usd, s.potential_cost_usd, s.savings_usd, s.quantity, s.unpriced, s.avg_latency_ms,
           s.p50_latency_ms, s.p95_latency_ms, s.p99_latency_ms,
           CASE WHEN s.potential_cost_usd > 0 THEN round(100 * s.savings_usd / s.potential_cost_usd, 2) ELSE 0.00 END,
           CASE WHEN s.as_of >= s.period_end THEN s.requests
                ELSE round(s.requests * extract(epoch FROM s.period_end - s.period_start)
                           / greatest(extract(epoch FROM s.as_of - s.period_start), 1))::bigint END,
           CASE WHEN s.as_of >= s.period_end THEN s.cost_usd
                ELSE round(s.cost_usd * extract(epoch FROM s.period_end - s.period_start)
                           / greatest(extract(epoch FROM s.as_of - s.period_start), 1), 12) END,
           CASE WHEN s.as_of >= s.period_end THEN 'actual' ELSE 'month_to_date_run_rate' END
    FROM (
      SELECT $2::date AS month, $3::timestamptz AS period_start, $4::timestamptz AS period_end, least(now(), $4) AS as_of, %1$s
      FROM (SELECT 1) one
      LEFT JOIN tally._usage_by($1, 'month', NULL, NULL, $2, $2, NULL, NULL, NULL, NULL, NULL, NULL, NULL) r ON true
      CROSS JOIN LATERAL tally._latency_percentiles(r.latency_hist, r.latency_max) AS r_pct
    ) s$q$, tally._usage_metrics_sql('r'))
  USING p_account_id, v_month, v_start, v_end;
END
$fn$;
COMMENT ON FUNCTION tally.get_period_summary(uuid, date) IS
  'One local month of an account (p_month: any day of it; NULL: the current month), every event of it: the metrics of get_usage_series, savings_pct (savings / potential cost, 0 when none), and a forecast of the month''s end. Forecast (forecast_method month_to_date_run_rate): the month so far scaled by the month''s length over the time elapsed (as_of = least(now(), period_end); elapsed_pct), requests rounded to an integer and cost to 12 decimals; a finished month''s forecast is its total (forecast_method actual). Exact at any moment. Errors: invalid_parameter for a month not started (22023); forbidden (42501). Members of the account and service callers.';

CREATE FUNCTION tally.get_usage_history(p_account_id uuid, p_months integer DEFAULT 12)
  RETURNS TABLE (month date,
                 requests bigint, successful bigint, failed bigint, cached bigint, cache_hit_pct numeric,
                 files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, tokens_total numeric,
                 cost_usd numeric, potential_cost_usd numeric, savings_usd numeric, quantity numeric, unpriced bigint,
                 avg_latency_ms numeric, p50_latency_ms numeric, p95_latency_ms numeric, p99_latency_ms numeric)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  SET jit = off
  AS $fn$
DECLARE
  v_tz   text := tally._require_usage_reader(p_account_id);
  v_last date;
BEGIN
  IF p_months IS NULL OR p_months < 1 OR p_months > 120 THEN
    PERFORM tally._raise('invalid_parameter', format('months: must be from 1 to 120 (got %s)', coalesce(p_months::text, 'NULL')));
  END IF;
  v_last := date_trunc('month', (now() AT TIME ZONE v_tz)::date)::date;
  RETURN QUERY EXECUTE format($q$
    SELECT g.m, %1$s
    FROM (SELECT s::date AS m FROM generate_series(($2 - ($3 - 1) * interval '1 month')::timestamp, $2::timestamp, interval '1 month') s) g
    LEFT JOIN tally._usage_by($1, 'month', NULL, NULL, ($2 - ($3 - 1) * interval '1 month')::date, $2, NULL,
                              NULL, NULL, NULL, NULL, NULL, NULL) r ON r.day = g.m
    CROSS JOIN LATERAL tally._latency_percentiles(r.latency_hist, r.latency_max) AS r_pct
    ORDER BY g.m$q$, tally._usage_metrics_sql('r'))
  USING p_account_id, v_last, p_months;
END
$fn$;
COMMENT ON FUNCTION tally.get_usage_history(uuid, integer) IS
  'The last p_months (1..120) local months of an account, the current one included, oldest first, gap-filled, with the metrics of get_usage_series. Read from the monthly rows (kept forever) plus the tail: exact at any moment. Errors: invalid_parameter (22023); forbidden (42501). Members of the account and service callers.';

-- ---------------------------------------------------------------------------------------
-- get_dashboard_stats
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION tally.get_dashboard_stats(p_account_id uuid, p_days integer DEFAULT 30)
  RETURNS TABLE (day date,
                 requests bigint, successful bigint, failed bigint, cached bigint, cache_hit_pct numeric,
                 files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, tokens_total numeric,
                 cost_usd numeric, potential_cost_usd numeric, savings_usd numeric, quantity numeric, unpriced bigint,
                 avg_latency_ms numeric, p50_latency_ms numeric, p95_latency_ms numeric, p99_latency_ms numeric,
                 requests_by_provider jsonb, requests_by_model jsonb)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  SET jit = off
  AS $fn$
DECLARE
  v_tz        text := tally._require_usage_reader(p_account_id);
  v_today     date;
  v_watermark bigint := (SELECT s.watermark FROM tally.rollup_state s);
BEGIN
  IF p_days IS NULL OR p_days < 1 OR p_days > 3660 THEN
    PERFORM tally._raise('invalid_parameter', format('days: must be from 1 to 3660 (got %s)', coalesce(p_days::text, 'NULL')));
  END IF;
  v_today := (now() AT TIME ZONE v_tz)::date;
  PERFORM tally._check_day_range(v_today - (p_days - 1), v_today);
  -- the maps need only request counts: read them alone from the rows by dimension and the
  -- tail (the watermark as a constant, as in tally._usage_by), not every metric per value
  RETURN QUERY EXECUTE format($q$
    WITH maps AS (
      SELECT c.day,
             jsonb_object_agg(c.value, c.n) FILTER (WHERE c.dimension = 'provider') AS by_provider,
             jsonb_object_agg(c.value, c.n) FILTER (WHERE c.dimension = 'model') AS by_model
      FROM (
        SELECT x.day, x.dimension, x.value, sum(x.n)::bigint AS n
        FROM (
          SELECT u.bucket AS day, u.dimension, u.value, u.requests AS n
          FROM tally.usage_daily_by_dimension u
          WHERE u.account_id = $1 AND u.bucket BETWEEN $2 AND $3 AND u.dimension IN ('provider', 'model') AND u.value IS NOT NULL
          UNION ALL
          SELECT (e.occurred_at AT TIME ZONE %2$L)::date, d.dimension, d.value, count(*)
          FROM tally.events e
          CROSS JOIN LATERAL (VALUES ('provider', e.provider), ('model', e.model)) AS d(dimension, value)
          WHERE e.account_id = $1 AND e.id > %3$s AND e.occurred_at >= $4 AND e.occurred_at < $5 AND d.value IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
          GROUP BY 1, 2, 3
        ) x
        GROUP BY 1, 2, 3
      ) c
      GROUP BY c.day
    )
    SELECT g.d, %1$s, coalesce(m.by_provider, '{}'), coalesce(m.by_model, '{}')
    FROM (SELECT s::date AS d FROM generate_series($2::timestamp, $3::timestamp, interval '1 day') s) g
    LEFT JOIN tally._usage_by($1, 'day', NULL, NULL, $2, $3, NULL, NULL, NULL, NULL, NULL, NULL, NULL) r ON r.day = g.d
    LEFT JOIN maps m ON m.day = g.d
    CROSS JOIN LATERAL tally._latency_percentiles(r.latency_hist, r.latency_max) AS r_pct
    ORDER BY g.d$q$, tally._usage_metrics_sql('r'), v_tz, v_watermark)
  USING p_account_id, v_today - (p_days - 1), v_today,
        tally._local_start((v_today - (p_days - 1))::timestamp, v_tz), tally._local_start((v_today + 1)::timestamp, v_tz);
END
$fn$;
COMMENT ON FUNCTION tally.get_dashboard_stats(uuid, integer) IS
  'The last p_days (1..3660) local days of an account, today included, oldest first, gap-filled: the metrics of get_usage_series plus requests_by_provider and requests_by_model ({"openai": 120, ...}; present values only, {} when none), for a page that wants one call. Exact at any moment. Errors: invalid_parameter, past_retention (22023); forbidden (42501). Members of the account and service callers.';

-- ---------------------------------------------------------------------------------------
-- Who may call them
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
  v_f regprocedure;
BEGIN
  FOR v_f IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
    WHERE p.pronamespace = 'tally'::regnamespace
      AND p.proname IN ('get_usage_series', 'get_breakdown', 'get_top_endpoints', 'compare_periods',
                        'get_period_summary', 'get_usage_history', 'get_dashboard_stats')
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated, service_role', v_f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO authenticated, service_role', v_f);
  END LOOP;
END
$$;

UPDATE tally.error_codes SET description = 'A range reaching data past retention: raw events (retention.events) for a rebuild or verification, or hourly / daily aggregates (retention.hourly, retention.daily) for a dashboard question.'
WHERE code = 'past_retention';
