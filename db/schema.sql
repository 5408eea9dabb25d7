-- The current schema of Tally, generated from db/migrations by `npm run schema` (pg_dump
-- --schema-only of schemas tally and auth on PostgreSQL 15, without the monthly partitions of
-- tally.events, which depend on the date). Do not edit: change the schema
-- with a new migration, then regenerate. CI fails when this file and the migrations differ.
--
-- PostgreSQL database dump
--

--
-- Name: auth; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA auth;

--
-- Name: SCHEMA auth; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA auth IS 'Supabase-compatible auth shim created by Tally on plain PostgreSQL.';

--
-- Name: tally; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA tally;

--
-- Name: SCHEMA tally; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA tally IS 'Tally: Postgres-native usage metering and usage analytics. Public functions are documented contracts; objects starting with _ are private.';

--
-- Name: jwt(); Type: FUNCTION; Schema: auth; Owner: -
--

CREATE FUNCTION auth.jwt() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
        select coalesce(
          nullif(current_setting('request.jwt.claim', true), ''),
          nullif(current_setting('request.jwt.claims', true), '')
        )::jsonb
      $$;

--
-- Name: FUNCTION jwt(); Type: COMMENT; Schema: auth; Owner: -
--

COMMENT ON FUNCTION auth.jwt() IS 'The claims of the request JWT (request.jwt.claims), as Supabase defines it.';

--
-- Name: role(); Type: FUNCTION; Schema: auth; Owner: -
--

CREATE FUNCTION auth.role() RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
        select coalesce(
          nullif(current_setting('request.jwt.claim.role', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
        )::text
      $$;

--
-- Name: FUNCTION role(); Type: COMMENT; Schema: auth; Owner: -
--

COMMENT ON FUNCTION auth.role() IS 'The role claim of the request JWT (request.jwt.claims), as Supabase defines it.';

--
-- Name: uid(); Type: FUNCTION; Schema: auth; Owner: -
--

CREATE FUNCTION auth.uid() RETURNS uuid
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
        select coalesce(
          nullif(current_setting('request.jwt.claim.sub', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
        )::uuid
      $$;

--
-- Name: FUNCTION uid(); Type: COMMENT; Schema: auth; Owner: -
--

COMMENT ON FUNCTION auth.uid() IS 'The sub claim of the request JWT (request.jwt.claims), as Supabase defines it.';

--
-- Name: _apply_rollup_metrics(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._apply_rollup_metrics() RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_table text;
  v_m     record;
BEGIN
  FOREACH v_table IN ARRAY ARRAY['usage_hourly', 'usage_hourly_totals', 'usage_daily', 'usage_monthly', 'usage_daily_by_dimension', 'usage_monthly_by_dimension'] LOOP
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

--
-- Name: FUNCTION _apply_rollup_metrics(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._apply_rollup_metrics() IS 'Migration helper: adds the columns of new sum metrics of tally._rollup_metrics() to usage_hourly/daily/monthly, the hourly totals and the tables by dimension (NOT NULL DEFAULT 0) and regenerates the three *_live views from the lists.';

--
-- Name: _backfill_rollup_metric(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._backfill_rollup_metric(p_metric text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "DateStyle" TO 'ISO'
    SET "TimeZone" TO 'UTC'
    AS $_$
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
    IF v_g.grain = 'hourly' THEN
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
$_$;

--
-- Name: FUNCTION _backfill_rollup_metric(p_metric text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._backfill_rollup_metric(p_metric text) IS 'Migration helper: sets a new sum metric of every stored usage_hourly/daily/monthly row, of the hourly totals and of the rows by dimension, from the folded raw events (id <= watermark, not voided) and returns the rows changed per grain; rows whose raw events are past retention keep the default.';

--
-- Name: _caller_is_service(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._caller_is_service() RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    select pg_catalog.pg_has_role(
      case when pg_catalog.current_setting('role') = 'none' then session_user
           else pg_catalog.current_setting('role')::name end,
      'service_role', 'MEMBER')
  $$;

--
-- Name: FUNCTION _caller_is_service(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._caller_is_service() IS 'True when the effective caller (SET ROLE, else the login role) is service_role, a member of it, or a superuser.';

--
-- Name: _caller_role(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._caller_role() RETURNS name
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    select case when pg_catalog.current_setting('role') = 'none' then session_user
                else pg_catalog.current_setting('role')::name end
  $$;

--
-- Name: FUNCTION _caller_role(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._caller_role() IS 'The effective caller of a SECURITY DEFINER function: the role set with SET ROLE, else the login role.';

--
-- Name: _check_account_fields(text, text, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._check_account_fields(p_name text, p_external_id text, p_timezone text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  IF p_name IS NOT NULL AND length(btrim(p_name)) NOT BETWEEN 1 AND 200 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'name: must be 1 to 200 characters');
  END IF;
  IF p_external_id IS NOT NULL AND length(p_external_id) NOT BETWEEN 1 AND 200 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'external_id: must be 1 to 200 characters');
  END IF;
  IF p_timezone IS NOT NULL AND NOT tally._is_valid_timezone(p_timezone) THEN
    PERFORM tally._raise('invalid_timezone', '22023', format('timezone: %L is not an IANA time zone name', p_timezone));
  END IF;
END
$$;

--
-- Name: FUNCTION _check_account_fields(p_name text, p_external_id text, p_timezone text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._check_account_fields(p_name text, p_external_id text, p_timezone text) IS 'Raises invalid_parameter / invalid_timezone (22023) for a bad account name, external_id or timezone; NULL arguments are not checked.';

--
-- Name: _check_batch(jsonb); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._check_batch(p_events jsonb) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_max bigint := tally._setting_int('ingest.max_batch');
BEGIN
  IF p_events IS NULL OR jsonb_typeof(p_events) <> 'array' THEN
    PERFORM tally._raise('invalid_parameter', '22023',
      format('events: must be a JSON array of event objects (got %s)', coalesce(jsonb_typeof(p_events), 'null')));
  END IF;
  IF jsonb_array_length(p_events) > v_max THEN
    PERFORM tally._raise('batch_too_large', '22023',
      format('events: %s items, more than the limit of %s per call (setting ingest.max_batch); split the batch',
             jsonb_array_length(p_events), v_max));
  END IF;
END
$$;

--
-- Name: FUNCTION _check_batch(p_events jsonb); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._check_batch(p_events jsonb) IS 'Raises invalid_parameter unless p_events is a JSON array, and batch_too_large when it holds more than the setting ingest.max_batch items.';

--
-- Name: _check_day_range(date, date); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._check_day_range(p_from date, p_to date) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
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

--
-- Name: FUNCTION _check_day_range(p_from date, p_to date); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._check_day_range(p_from date, p_to date) IS 'Raises invalid_parameter unless p_from <= p_to (local days, both included) within 3660 days, and past_retention when p_from is before the daily rows kept (retention.daily).';

--
-- Name: _check_rollup_range(timestamp with time zone, timestamp with time zone, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._check_rollup_range(p_from timestamp with time zone, p_to timestamp with time zone, p_verb text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
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

--
-- Name: FUNCTION _check_rollup_range(p_from timestamp with time zone, p_to timestamp with time zone, p_verb text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._check_rollup_range(p_from timestamp with time zone, p_to timestamp with time zone, p_verb text) IS 'Raises invalid_parameter unless from < to within 400 days, and past_retention when the range starts less than 32 days after the raw events'' retention cutoff.';

--
-- Name: _check_usage_filters(uuid[], text[], text[], text[], text[], text[]); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._check_usage_filters(p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) RETURNS integer
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
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

--
-- Name: FUNCTION _check_usage_filters(p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._check_usage_filters(p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) IS 'Raises invalid_parameter for an empty filter list, one longer than 1000 values or one holding NULL; returns how many filters are given.';

--
-- Name: _create_events_partition(timestamp with time zone); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._create_events_partition(p_month timestamp with time zone) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    AS $_$
DECLARE
  v_from  timestamptz := date_trunc('month', p_month, 'UTC');
  v_to    timestamptz := date_trunc('month', p_month, 'UTC') + interval '1 month';
  v_name  text := 'events_p' || to_char(p_month AT TIME ZONE 'UTC', 'YYYY_MM');
  v_moved bigint := 0;
BEGIN
  IF to_regclass(format('tally.%I', v_name)) IS NOT NULL THEN
    RETURN NULL;
  END IF;
  LOCK TABLE tally.events IN SHARE UPDATE EXCLUSIVE MODE;
  -- Writers of this month wait for the moment of the move instead of landing behind it.
  LOCK TABLE tally.events_default IN SHARE ROW EXCLUSIVE MODE;
  EXECUTE format('CREATE TABLE tally.%I (LIKE tally.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', v_name);
  EXECUTE format(
    'WITH moved AS (DELETE FROM tally.events_default d WHERE d.occurred_at >= $1 AND d.occurred_at < $2 RETURNING d.*)
     INSERT INTO tally.%I SELECT * FROM moved', v_name) USING v_from, v_to;
  GET DIAGNOSTICS v_moved = ROW_COUNT;
  EXECUTE format('ALTER TABLE tally.%I ENABLE ROW LEVEL SECURITY', v_name);
  EXECUTE format('REVOKE ALL ON TABLE tally.%I FROM PUBLIC, anon, authenticated, service_role', v_name);
  EXECUTE format('ALTER TABLE tally.events ATTACH PARTITION tally.%I FOR VALUES FROM (%L) TO (%L)', v_name, v_from, v_to);
  EXECUTE format('COMMENT ON TABLE tally.%I IS %L', v_name,
    format('Events that occurred in %s (UTC). A partition of tally.events, created by tally.ensure_partitions(); read it through tally.events.',
           to_char(p_month AT TIME ZONE 'UTC', 'YYYY-MM')));
  RETURN v_moved;
END
$_$;

--
-- Name: FUNCTION _create_events_partition(p_month timestamp with time zone); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._create_events_partition(p_month timestamp with time zone) IS 'Creates the events partition of the UTC month containing p_month, moving matching rows out of events_default first; returns how many rows moved, or NULL if it existed.';

--
-- Name: _dim_key(uuid, text, text, text, text, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._dim_key(p_api_key_id uuid, p_event_type text, p_provider text, p_model text, p_endpoint text, p_file_type text) RETURNS uuid
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  RETURN pg_catalog.md5(pg_catalog.concat_ws('|',
    coalesce(p_api_key_id::text, '-'),
    coalesce(pg_catalog.length(p_event_type) || ':' || p_event_type, '-'),
    coalesce(pg_catalog.length(p_provider) || ':' || p_provider, '-'),
    coalesce(pg_catalog.length(p_model) || ':' || p_model, '-'),
    coalesce(pg_catalog.length(p_endpoint) || ':' || p_endpoint, '-'),
    coalesce(pg_catalog.length(p_file_type) || ':' || p_file_type, '-')))::uuid;
END
$$;

--
-- Name: FUNCTION _dim_key(p_api_key_id uuid, p_event_type text, p_provider text, p_model text, p_endpoint text, p_file_type text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._dim_key(p_api_key_id uuid, p_event_type text, p_provider text, p_model text, p_endpoint text, p_file_type text) IS 'The key of a dimension tuple (api_key_id, event_type, provider, model, endpoint, file_type) in the rollup tables, absent values included; one row per bucket and key.';

--
-- Name: _dim_key_sql(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._dim_key_sql(p_alias text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
    select format('pg_catalog.md5(pg_catalog.concat_ws(''|'', coalesce(%1$I.api_key_id::text, ''-''), '
                  'coalesce(pg_catalog.length(%1$I.event_type) || '':'' || %1$I.event_type, ''-''), '
                  'coalesce(pg_catalog.length(%1$I.provider) || '':'' || %1$I.provider, ''-''), '
                  'coalesce(pg_catalog.length(%1$I.model) || '':'' || %1$I.model, ''-''), '
                  'coalesce(pg_catalog.length(%1$I.endpoint) || '':'' || %1$I.endpoint, ''-''), '
                  'coalesce(pg_catalog.length(%1$I.file_type) || '':'' || %1$I.file_type, ''-'')))::uuid', p_alias)
  $_$;

--
-- Name: FUNCTION _dim_key_sql(p_alias text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._dim_key_sql(p_alias text) IS 'The expression of tally._dim_key over the dimension columns of the given alias (for generated SQL).';

--
-- Name: _events_writers(text[]); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._events_writers(p_among text[] DEFAULT NULL::text[]) RETURNS text[]
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    select pg_catalog.array_agg(DISTINCT l.virtualtransaction)
    from pg_catalog.pg_locks l
    where l.locktype = 'relation' and l.mode = 'RowExclusiveLock' and l.granted
      and l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
      and (p_among is null or l.virtualtransaction = any (p_among))
      and l.database = (select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database())
      and l.relation in (select 'tally.events'::regclass::oid
                         union all
                         select i.inhrelid from pg_catalog.pg_inherits i where i.inhparent = 'tally.events'::regclass)
  $$;

--
-- Name: FUNCTION _events_writers(p_among text[]); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._events_writers(p_among text[]) IS 'Virtual transaction ids of the other transactions holding RowExclusiveLock on tally.events or a partition (optionally only those among p_among): the only ones that can own an event id not yet visible.';

--
-- Name: _fold_rollups(text, bigint, bigint, text[], uuid[], timestamp with time zone[], timestamp with time zone[], text[]); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._fold_rollups(p_source text, p_lo bigint, p_hi bigint, p_grains text[], p_range_accounts uuid[] DEFAULT NULL::uuid[], p_range_from timestamp with time zone[] DEFAULT NULL::timestamp with time zone[], p_range_to timestamp with time zone[] DEFAULT NULL::timestamp with time zone[], p_range_buckets text[] DEFAULT NULL::text[]) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET jit TO 'off'
    SET "DateStyle" TO 'ISO'
    SET "TimeZone" TO 'UTC'
    SET work_mem TO '32MB'
    SET enable_sort TO 'off'
    SET enable_incremental_sort TO 'off'
    AS $_$
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
$_$;

--
-- Name: FUNCTION _fold_rollups(p_source text, p_lo bigint, p_hi bigint, p_grains text[], p_range_accounts uuid[], p_range_from timestamp with time zone[], p_range_to timestamp with time zone[], p_range_buckets text[]); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._fold_rollups(p_source text, p_lo bigint, p_hi bigint, p_grains text[], p_range_accounts uuid[], p_range_from timestamp with time zone[], p_range_to timestamp with time zone[], p_range_buckets text[]) IS 'Folds events into the given grains (hourly, hourly_totals, daily, monthly, daily_by_dimension, monthly_by_dimension) with additive upserts and returns how many: the id window (p_lo, p_hi] for source window, or, for source ranges (grains of one bucket: hourly with or without hourly_totals, or daily with or without daily_by_dimension, or monthly likewise), the events with id <= p_hi in the given (account, from, to, bucket) rows whose bucket is that bucket. Voided events are skipped. The statement is generated from tally._rollup_metrics(), tally._rollup_grains() and tally._rollup_dimensions().';

--
-- Name: _hist_add(bigint[], bigint[]); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._hist_add(p_a bigint[], p_b bigint[]) RETURNS bigint[]
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  IF pg_catalog.cardinality(p_a) = 42 AND pg_catalog.cardinality(p_b) = 42 THEN
    FOR i IN 1..42 LOOP
      p_a[i] := p_a[i] + p_b[i];
    END LOOP;
    RETURN p_a;
  END IF;
  RETURN coalesce(p_a, p_b);
END
$$;

--
-- Name: FUNCTION _hist_add(p_a bigint[], p_b bigint[]); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._hist_add(p_a bigint[], p_b bigint[]) IS 'Adds two 42-slot latency histograms slot by slot (anything else: the first non-null one unchanged).';

--
-- Name: _hist_one(integer); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._hist_one(p_latency_ms integer) RETURNS bigint[]
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_hist   bigint[] := pg_catalog.array_fill(0::bigint, ARRAY[42]);
  v_bucket integer;
BEGIN
  IF p_latency_ms IS NOT NULL THEN
    v_bucket := pg_catalog.width_bucket(p_latency_ms, tally.latency_buckets());
    IF v_bucket BETWEEN 0 AND 41 THEN
      v_hist[v_bucket + 1] := 1;
    END IF;
  END IF;
  RETURN v_hist;
END
$$;

--
-- Name: FUNCTION _hist_one(p_latency_ms integer); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._hist_one(p_latency_ms integer) IS 'The 42-slot latency histogram of a single event.';

--
-- Name: _hist_sfunc(bigint[], integer, bigint); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._hist_sfunc(p_state bigint[], p_bucket integer, p_count bigint) RETURNS bigint[]
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  IF p_state IS NULL THEN
    p_state := array_fill(0::bigint, ARRAY[42]);
  END IF;
  IF p_bucket BETWEEN 0 AND 41 AND p_count IS NOT NULL THEN
    p_state[p_bucket + 1] := p_state[p_bucket + 1] + p_count;
  END IF;
  RETURN p_state;
END
$$;

--
-- Name: FUNCTION _hist_sfunc(p_state bigint[], p_bucket integer, p_count bigint); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._hist_sfunc(p_state bigint[], p_bucket integer, p_count bigint) IS 'State function of tally._hist_agg: adds p_count to slot p_bucket (0-based, 0..41; anything else is ignored) of a 42-slot histogram.';

--
-- Name: _hist_slot_conditions(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._hist_slot_conditions(p_value text) RETURNS text[]
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    select pg_catalog.array_agg(pg_catalog.concat_ws(' AND ',
             CASE WHEN k > 0 THEN format('(%s) >= %s', p_value, b[k]) END,
             CASE WHEN k < 41 THEN format('(%s) < %s', p_value, b[k + 1]) END) ORDER BY k)
    from pg_catalog.generate_series(0, 41) as k, tally.latency_buckets() as b
  $$;

--
-- Name: FUNCTION _hist_slot_conditions(p_value text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._hist_slot_conditions(p_value text) IS 'The 42 conditions (slot 0..41, as SQL text) that put a value expression into its latency histogram slot, equal to width_bucket(value, tally.latency_buckets()).';

--
-- Name: _ingest(jsonb, text, bigint); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._ingest(p_events jsonb, p_source text, p_index_base bigint DEFAULT 0) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET enable_nestloop TO 'off'
    SET jit TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
DECLARE
  v_result    jsonb;
  v_dups      jsonb;
  v_conflicts jsonb;
  v_attempt   integer;
BEGIN
  -- Two attempts: an insert routed to events_default that waited while ensure_partitions
  -- attached the partition for its month fails the default partition's new constraint
  -- (23514). Nothing of the attempt survives (its subtransaction rolls back), and the next
  -- statement routes the rows to the new partition.
  FOR v_attempt IN 1..2 LOOP
  BEGIN
  WITH guards AS MATERIALIZED (
    -- the settings, read once per call
    -- (one probe of tally.settings for both; events_floor is tally._retention_floor('events'))
    SELECT now() - r.retention AS events_floor, r.retention AS events_retention, coalesce(r.refuse, 0) = 1 AS refuse_unpriced
    FROM (SELECT max(s.value) FILTER (WHERE s.name = 'retention.events')::interval AS retention,
                 max(s.value) FILTER (WHERE s.name = 'ingest.refuse_unpriced_models')::integer AS refuse
          FROM tally.settings s WHERE s.name IN ('retention.events', 'ingest.refuse_unpriced_models')) r
  ),
  checked AS (
    -- the validator's outcome, then the guards on what it accepted
    SELECT p.*,
           CASE
             WHEN p.code IS NOT NULL THEN NULL
             -- a guard refuses only a new item: the retry of a stored event (its key
             -- claimed already) is a duplicate or a conflict below, whatever changed since
             WHEN p.occurred_at < g.events_floor AND NOT (p.idempotency_key IS NOT NULL AND EXISTS (
                    SELECT 1 FROM tally.idempotency_keys k WHERE k.account_id = p.account_id AND k.idempotency_key = p.idempotency_key))
               THEN format('past_retention|occurred_at: %s is older than the retention of raw events (setting retention.events = %s): it would be dropped by the next retention run',
                           p.payload ->> 'occurred_at', g.events_retention)
             WHEN g.refuse_unpriced AND (p.tokens_in IS NOT NULL OR p.tokens_out IS NOT NULL)
                  AND ((NOT p.cost_given AND p.cost_usd IS NULL) OR (p.cached AND NOT p.potential_cost_given AND p.potential_cost_usd IS NULL))
                  AND NOT (p.idempotency_key IS NOT NULL AND EXISTS (
                    SELECT 1 FROM tally.idempotency_keys k WHERE k.account_id = p.account_id AND k.idempotency_key = p.idempotency_key))
               THEN format('unpriced_model|model: no price for provider %s, model %s at %s in tally.model_prices (setting ingest.refuse_unpriced_models); give cost_usd or set the price',
                           coalesce(quote_literal(p.provider), 'NULL'), coalesce(quote_literal(p.model), 'NULL'), p.occurred_at)
           END AS guard
    FROM tally._parse_events(p_events, p_index_base) p CROSS JOIN guards g
  ),
  parsed AS MATERIALIZED (
    SELECT c.item_index, c.payload, c.known_account_id, c.account_id, c.occurred_at, c.api_key_id, c.event_type,
           c.provider, c.model, c.endpoint, c.method, c.status_code, c.success, c.error_message, c.file_type,
           c.files, c.bytes, c.tokens_in, c.tokens_out, c.cached, c.cost_usd, c.potential_cost_usd, c.cost_given,
           c.potential_cost_given, c.latency_ms, c.quantity, c.idempotency_key, c.properties,
           coalesce(c.code, split_part(c.guard, '|', 1)) AS code,
           coalesce(c.message, substr(c.guard, strpos(c.guard, '|') + 1)) AS message,
           -- the canonical validated payload of a keyed item, hashed (see the file's header)
           CASE WHEN c.code IS NULL AND c.guard IS NULL AND c.idempotency_key IS NOT NULL THEN
             hashtextextended(ROW(
               c.api_key_id, CASE WHEN jsonb_typeof(c.payload -> 'occurred_at') = 'string' THEN extract(epoch FROM c.occurred_at) END,
               c.event_type, c.provider, c.model, c.endpoint, c.method, c.status_code, c.success, c.error_message,
               c.file_type, c.files, c.bytes, c.tokens_in, c.tokens_out, c.cached,
               CASE WHEN c.cost_given THEN c.cost_usd END, CASE WHEN c.potential_cost_given THEN c.potential_cost_usd END,
               c.latency_ms, c.quantity, c.properties)::text, 0)
           END AS payload_fingerprint
    FROM checked c
  ),
  dead AS (
    -- nothing is lost: every refused item is kept as sent, once per idempotency key (a
    -- retry of a batch whose reply was lost refuses the same items again)
    INSERT INTO tally.rejected_events (account_id, source, item_index, code, message, payload, idempotency_key)
    SELECT p.known_account_id, p_source, p.item_index, p.code, p.message, p.payload,
           CASE WHEN jsonb_typeof(p.payload -> 'idempotency_key') = 'string'
                 AND length(p.payload ->> 'idempotency_key') BETWEEN 1 AND 255
                THEN p.payload ->> 'idempotency_key' END
    FROM parsed p WHERE p.code IS NOT NULL
    ORDER BY 1, 7  -- the unique index's order, so concurrent calls never deadlock on it
    ON CONFLICT (source, account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  ),
  first_of_key AS (
    -- within the batch, the first item carrying a key wins; later ones are duplicates
    SELECT DISTINCT ON (p.account_id, p.idempotency_key) p.item_index, p.account_id, p.idempotency_key, p.occurred_at, p.payload_fingerprint
    FROM parsed p
    WHERE p.code IS NULL AND p.idempotency_key IS NOT NULL
    ORDER BY p.account_id, p.idempotency_key, p.item_index
  ),
  claimed AS (
    -- keys not seen before. A key inserted by a transaction still in flight makes this wait
    -- for it: if it commits, the key is a duplicate here; if it rolls back, it is ours.
    -- Sorted, so two batches sharing keys lock them in the same order.
    INSERT INTO tally.idempotency_keys (account_id, idempotency_key, occurred_at, payload_fingerprint)
    SELECT f.account_id, f.idempotency_key, f.occurred_at, f.payload_fingerprint FROM first_of_key f
    ORDER BY f.account_id, f.idempotency_key
    ON CONFLICT DO NOTHING
    RETURNING account_id, idempotency_key
  ),
  kept AS (
    -- the keyed items that claimed their key
    SELECT f.item_index FROM first_of_key f
    JOIN claimed c ON c.account_id = f.account_id AND c.idempotency_key = f.idempotency_key
  ),
  stored AS (
    INSERT INTO tally.events (
      account_id, occurred_at, api_key_id, event_type, provider, model, endpoint, method, status_code,
      success, error_message, file_type, files, bytes, tokens_in, tokens_out, cached, cost_usd,
      potential_cost_usd, cost_given, potential_cost_given, latency_ms, quantity, idempotency_key, properties)
    SELECT p.account_id, p.occurred_at, p.api_key_id, p.event_type, p.provider, p.model, p.endpoint, p.method, p.status_code,
           p.success, p.error_message, p.file_type, p.files, p.bytes, p.tokens_in, p.tokens_out, p.cached, p.cost_usd,
           p.potential_cost_usd, p.cost_given, p.potential_cost_given, p.latency_ms, p.quantity, p.idempotency_key, p.properties
    FROM parsed p
    WHERE p.code IS NULL
      AND (p.idempotency_key IS NULL OR p.item_index IN (SELECT k.item_index FROM kept k))
    ORDER BY p.item_index
    RETURNING 1
  )
  SELECT jsonb_build_object(
    'accepted',   (SELECT count(*) FROM stored),
    'rejected',   coalesce((SELECT jsonb_agg(jsonb_build_object('index', p.item_index, 'code', p.code, 'message', p.message)
                                             ORDER BY p.item_index) FROM parsed p WHERE p.code IS NOT NULL), '[]'::jsonb)),
    -- the valid keyed items not stored: duplicates or conflicts
    (SELECT jsonb_agg(jsonb_build_object('index', p.item_index, 'account_id', p.account_id, 'key', p.idempotency_key,
                                         'hash', p.payload_fingerprint, 'payload', p.payload))
     FROM parsed p
     WHERE p.code IS NULL AND p.idempotency_key IS NOT NULL AND p.item_index NOT IN (SELECT k.item_index FROM kept k))
  INTO v_result, v_dups;

  IF v_dups IS NOT NULL THEN
    -- a not-stored item whose payload differs from the one that claimed its key (seen now,
    -- including a claim committed by a concurrent writer the statement above waited for)
    WITH conflict AS (
      SELECT d.index, d.account_id, d.key, d.payload, ev.id AS event_id,
             format('idempotency_key: %L was already used by event %s with a different payload; that event is kept and this item was not stored',
                    d.key, coalesce(ev.id::text, '(no longer stored)')) AS message
      FROM jsonb_to_recordset(v_dups) AS d(index bigint, account_id uuid, key text, hash bigint, payload jsonb)
      JOIN tally.idempotency_keys k ON k.account_id = d.account_id AND k.idempotency_key = d.key
      LEFT JOIN LATERAL (
        SELECT e.id FROM tally.events e
        WHERE e.account_id = k.account_id AND e.occurred_at = k.occurred_at AND e.idempotency_key = k.idempotency_key
        ORDER BY e.id LIMIT 1
      ) ev ON true
      WHERE k.payload_fingerprint IS NOT NULL AND k.payload_fingerprint <> d.hash
    ),
    kept_conflict AS (
      -- kept like every refusal, once per key and source
      INSERT INTO tally.rejected_events (account_id, source, item_index, code, message, payload, idempotency_key)
      SELECT c.account_id, p_source, c.index, 'idempotency_conflict', c.message, c.payload, c.key
      FROM conflict c
      ORDER BY 1, 7
      ON CONFLICT (source, account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    )
    SELECT jsonb_agg(jsonb_build_object('index', c.index, 'code', 'idempotency_conflict', 'message', c.message,
                                        'event_id', c.event_id::text) ORDER BY c.index)
    INTO v_conflicts FROM conflict c;
  END IF;

  RETURN v_result || jsonb_build_object(
    'duplicates', coalesce(jsonb_array_length(v_dups), 0) - coalesce(jsonb_array_length(v_conflicts), 0),
    'conflicts', coalesce(v_conflicts, '[]'::jsonb));
  EXCEPTION WHEN check_violation THEN
    IF v_attempt = 2 THEN
      RAISE;
    END IF;
  END;
  END LOOP;
END
$$;

--
-- Name: FUNCTION _ingest(p_events jsonb, p_source text, p_index_base bigint); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._ingest(p_events jsonb, p_source text, p_index_base bigint) IS 'Validates and stores a JSON array of events: valid items once per idempotency key, refused items (validator codes, past_retention, unpriced_model) into tally.rejected_events (source p_source); a keyed item whose key was used with another payload is an idempotency_conflict (kept there too, with the stored event''s id). Returns {accepted, duplicates, conflicts: [{index, code, message, event_id}], rejected: [{index, code, message}]}.';

--
-- Name: _is_iso_timestamptz(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._is_iso_timestamptz(p_value text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
BEGIN
  RETURN CASE
    WHEN length(p_value) > 40
      OR p_value !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN false
    WHEN substr(p_value, 1, 4) < '1970' COLLATE "C" OR substr(p_value, 6, 2) NOT BETWEEN ('01' COLLATE "C") AND ('12' COLLATE "C")
      OR substr(p_value, 9, 2) NOT BETWEEN ('01' COLLATE "C") AND ('31' COLLATE "C") OR substr(p_value, 12, 2) > '23' COLLATE "C"
      OR substr(p_value, 15, 2) > '59' COLLATE "C" OR (substr(p_value, 17, 1) = ':' AND substr(p_value, 18, 2) > '59' COLLATE "C") THEN false
    WHEN substr(right(p_value, 6), 1, 1) IN ('+', '-') AND substr(right(p_value, 6), 4, 1) = ':'
      THEN substr(right(p_value, 5), 1, 2) <= '15' COLLATE "C" AND right(p_value, 2) <= '59' COLLATE "C" AND tally._is_real_day(p_value)
    WHEN substr(right(p_value, 5), 1, 1) IN ('+', '-')
      THEN substr(right(p_value, 4), 1, 2) <= '15' COLLATE "C" AND right(p_value, 2) <= '59' COLLATE "C" AND tally._is_real_day(p_value)
    WHEN substr(right(p_value, 3), 1, 1) IN ('+', '-')
      THEN right(p_value, 2) <= '15' COLLATE "C" AND tally._is_real_day(p_value)
    ELSE tally._is_real_day(p_value)
  END;
END
$_$;

--
-- Name: FUNCTION _is_iso_timestamptz(p_value text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._is_iso_timestamptz(p_value text) IS 'True for an ISO 8601 timestamp with an explicit UTC offset (2026-11-22T10:00:00Z, 2026-11-22 10:00:00.123+05:30), year 1970 or later, that names a real calendar day.';

--
-- Name: _is_real_day(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._is_real_day(p_value text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  RETURN substr(p_value, 9, 2) <= '28' COLLATE "C"
      OR substr(p_value, 9, 2)::int <= extract(day from pg_catalog.make_date(substr(p_value, 1, 4)::int, substr(p_value, 6, 2)::int, 1) + interval '1 month - 1 day');
END
$$;

--
-- Name: FUNCTION _is_real_day(p_value text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._is_real_day(p_value text) IS 'True when the yyyy-mm-dd prefix of p_value (already shape-checked) names a real calendar day.';

--
-- Name: _is_uuid(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._is_uuid(p_value text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
BEGIN
  RETURN length(p_value) = 36 AND p_value ~ '^[0-9a-fA-F-]+$'
     AND substr(p_value, 9, 1) = '-' AND substr(p_value, 14, 1) = '-'
     AND substr(p_value, 19, 1) = '-' AND substr(p_value, 24, 1) = '-'
     AND length(replace(p_value, '-', '')) = 32;
END
$_$;

--
-- Name: FUNCTION _is_uuid(p_value text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._is_uuid(p_value text) IS 'True for a canonical UUID string (8-4-4-4-12 hexadecimal digits).';

--
-- Name: _is_valid_timezone(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._is_valid_timezone(p_timezone text) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ select exists (select 1 from pg_catalog.pg_timezone_names where name = p_timezone) $$;

--
-- Name: FUNCTION _is_valid_timezone(p_timezone text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._is_valid_timezone(p_timezone text) IS 'True for an IANA time zone name known to this server (e.g. Europe/Paris, UTC).';

--
-- Name: _jnum(jsonb); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._jnum(p_value jsonb) RETURNS numeric
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
BEGIN
  RETURN CASE pg_catalog.jsonb_typeof(p_value)
    WHEN 'number' THEN p_value::numeric
    WHEN 'string' THEN CASE WHEN (p_value #>> '{}') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$'
                            THEN (p_value #>> '{}')::numeric END
  END;
END
$_$;

--
-- Name: FUNCTION _jnum(p_value jsonb); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._jnum(p_value jsonb) IS 'A JSON number, or a string holding a plain decimal such as "0.0012", as numeric; NULL for any other JSON value.';

--
-- Name: _latency_percentiles(bigint[], integer); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._latency_percentiles(p_hist bigint[], p_latency_max integer, OUT p50 numeric, OUT p95 numeric, OUT p99 numeric) RETURNS record
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    AS $$
DECLARE
  v_bounds constant integer[] := tally.latency_buckets();
  v_n      bigint := 0;
  v_c      bigint;
  v_ranks  bigint[];
  v_rank   bigint;     -- the rank looked for next
  v_out    numeric[] := ARRAY[NULL, NULL, NULL]::numeric[];
  v_seen   bigint := 0;
  v_j      integer := 1;
  v_k      integer := -1;
  v_lo     numeric;
  v_hi     numeric;
BEGIN
  -- a one-dimensional, 1-based array of 42 slots, as the rollups store it; else NULLs
  IF p_hist IS NULL OR cardinality(p_hist) <> 42 OR array_ndims(p_hist) <> 1 OR array_lower(p_hist, 1) <> 1 THEN
    RETURN;
  END IF;
  FOREACH v_c IN ARRAY p_hist LOOP
    v_n := v_n + v_c;
  END LOOP;
  IF v_n = 0 THEN
    RETURN;
  END IF;
  v_ranks := ARRAY[greatest(1, ceil(0.50 * v_n)), greatest(1, ceil(0.95 * v_n)), greatest(1, ceil(0.99 * v_n))];
  v_rank := v_ranks[1];
  FOREACH v_c IN ARRAY p_hist LOOP
    v_k := v_k + 1;   -- the slot, 0-based
    v_seen := v_seen + v_c;
    CONTINUE WHEN v_seen < v_rank;
    WHILE v_j <= 3 AND v_seen >= v_ranks[v_j] LOOP
      IF v_ranks[v_j] = v_n AND p_latency_max IS NOT NULL THEN
        v_out[v_j] := p_latency_max;  -- the largest latency is known exactly
      ELSE
        v_lo := CASE WHEN v_k = 0 THEN 0 ELSE v_bounds[v_k] END;
        v_hi := CASE WHEN v_k = 41 THEN NULL ELSE v_bounds[v_k + 1] - 1 END;
        IF p_latency_max IS NOT NULL THEN
          v_hi := greatest(v_lo, least(coalesce(v_hi, p_latency_max), p_latency_max));
        END IF;
        v_out[v_j] := CASE WHEN v_hi IS NULL THEN v_lo
                           WHEN v_lo + v_hi = 0 THEN 0
                           ELSE round((2 * v_lo * v_hi / (v_lo + v_hi))::double precision::numeric, 2) END;
      END IF;
      v_j := v_j + 1;
    END LOOP;
    EXIT WHEN v_j > 3;
    v_rank := v_ranks[v_j];
  END LOOP;
  p50 := v_out[1];
  p95 := v_out[2];
  p99 := v_out[3];
END
$$;

--
-- Name: FUNCTION _latency_percentiles(p_hist bigint[], p_latency_max integer, OUT p50 numeric, OUT p95 numeric, OUT p99 numeric); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._latency_percentiles(p_hist bigint[], p_latency_max integer, OUT p50 numeric, OUT p95 numeric, OUT p99 numeric) IS 'p50, p95 and p99 (ms, 2 decimals) of a 42-slot latency histogram in one walk that stops at p99, each the estimate tally.histogram_percentile gives (latency_max bounds the top slot); NULL when empty, or when the array is not one-dimensional, 1-based and 42 long.';

--
-- Name: _live_view_sql(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._live_view_sql(p_grain text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
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
$_$;

--
-- Name: FUNCTION _live_view_sql(p_grain text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._live_view_sql(p_grain text) IS 'The SELECT of the live view of a grain (tally.usage_<grain>_live), generated from tally._rollup_metrics() and tally._rollup_grains().';

--
-- Name: _local_start(timestamp without time zone, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._local_start(p_local timestamp without time zone, p_timezone text) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ select least(p_local AT TIME ZONE p_timezone, ((p_local - interval '1 hour') AT TIME ZONE p_timezone) + interval '1 hour') $$;

--
-- Name: FUNCTION _local_start(p_local timestamp without time zone, p_timezone text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._local_start(p_local timestamp without time zone, p_timezone text) IS 'The first instant at which the clock of p_timezone reads p_local (a local midnight that happens twice, clocks falling back from 01:00 to 00:00: its first pass; AT TIME ZONE alone gives the second).';

--
-- Name: _meter_field_accepts(text, regtype); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._meter_field_accepts(p_field text, p_type regtype) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    select case
      when p_field in ('account_id', 'api_key_id') then p_type in ('uuid'::regtype, 'text'::regtype, 'character varying'::regtype)
      when p_field = 'occurred_at' then p_type = 'timestamp with time zone'::regtype
      when p_field in ('provider', 'model', 'endpoint', 'method', 'error_message', 'file_type', 'idempotency_key')
        then p_type in ('text'::regtype, 'character varying'::regtype, 'character'::regtype, 'name'::regtype)
      when p_field in ('status_code', 'files', 'bytes', 'tokens_in', 'tokens_out')
        then p_type in ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype, 'numeric'::regtype)
      when p_field = 'latency_ms'
        then p_type in ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype, 'numeric'::regtype, 'real'::regtype, 'double precision'::regtype)
      when p_field in ('cost_usd', 'potential_cost_usd', 'quantity')
        then p_type in ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype, 'numeric'::regtype)
      when p_field in ('success', 'cached') then p_type = 'boolean'::regtype
      when p_field = 'properties' then p_type = 'jsonb'::regtype
      else false
    end
  $$;

--
-- Name: FUNCTION _meter_field_accepts(p_field text, p_type regtype); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._meter_field_accepts(p_field text, p_type regtype) IS 'True when a column of type p_type may feed event field p_field: uuid or text for tenants, timestamptz for occurred_at (a timestamp without time zone is ambiguous), exact numbers for counts and money, boolean, jsonb for properties (a json value may hold \u0000, which no event can).';

--
-- Name: _my_account_ids(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._my_account_ids() RETURNS uuid[]
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    select coalesce(pg_catalog.array_agg(m.account_id), '{}')
    from tally.account_members m
    where m.user_id = (select auth.uid())
  $$;

--
-- Name: FUNCTION _my_account_ids(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._my_account_ids() IS 'The accounts the current Supabase user (auth.uid()) is a member of. Policies call it as (select tally._my_account_ids()) so it runs once per statement.';

--
-- Name: _normalize_setting(text, text, text, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._normalize_setting(p_kind text, p_value text, p_min text, p_max text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
  v_int      bigint;
  v_interval interval;
BEGIN
  IF p_kind = 'integer' THEN
    -- ASCII blanks only: \s also matches Unicode spaces, which the cast would refuse
    IF p_value IS NULL OR p_value !~ '^[ \t\r\n]*[0-9]{1,18}[ \t\r\n]*$' THEN
      RETURN NULL;
    END IF;
    v_int := p_value::bigint;
    IF v_int < p_min::bigint OR v_int > p_max::bigint THEN
      RETURN NULL;
    END IF;
    RETURN v_int::text;
  END IF;
  BEGIN
    v_interval := p_value::interval;
  EXCEPTION WHEN data_exception THEN
    RETURN NULL;
  END;
  IF v_interval IS NULL OR v_interval < p_min::interval OR v_interval > p_max::interval THEN
    RETURN NULL;
  END IF;
  RETURN btrim(p_value);
END
$_$;

--
-- Name: FUNCTION _normalize_setting(p_kind text, p_value text, p_min text, p_max text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._normalize_setting(p_kind text, p_value text, p_min text, p_max text) IS 'The value normalised (e.g. ''05'' -> ''5'', '' 7 days '' -> ''7 days''), or NULL when it is not of the kind or outside [min, max].';

--
-- Name: _parse_events(jsonb, bigint); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._parse_events(p_events jsonb, p_index_base bigint DEFAULT 0) RETURNS TABLE(item_index bigint, payload jsonb, code text, message text, known_account_id uuid, account_id uuid, occurred_at timestamp with time zone, api_key_id uuid, event_type text, provider text, model text, endpoint text, method text, status_code smallint, success boolean, error_message text, file_type text, files bigint, bytes bigint, tokens_in bigint, tokens_out bigint, cached boolean, cost_usd numeric, potential_cost_usd numeric, cost_given boolean, potential_cost_given boolean, latency_ms integer, quantity numeric, idempotency_key text, properties jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH limits AS MATERIALIZED (
    -- the settings, read once per call
    SELECT tally._setting_int('ingest.properties_max_bytes') AS properties_max_bytes,
           tally._setting_int('ingest.error_message_max_length')::int AS error_message_max_length,
           tally._setting_interval('ingest.max_future_skew') AS max_future_skew
  ),
  items AS MATERIALIZED (
    -- each array element with the JSON type of every field and its numbers read once
    SELECT p_index_base + t.ord - 1 AS item_index, t.e, jsonb_typeof(t.e) AS e_type,
           jsonb_typeof(t.e->'account_id') AS t_account_id, jsonb_typeof(t.e->'api_key_id') AS t_api_key_id,
           jsonb_typeof(t.e->'occurred_at') AS t_occurred_at, jsonb_typeof(t.e->'event_type') AS t_event_type,
           jsonb_typeof(t.e->'provider') AS t_provider, jsonb_typeof(t.e->'model') AS t_model,
           jsonb_typeof(t.e->'endpoint') AS t_endpoint, jsonb_typeof(t.e->'method') AS t_method,
           jsonb_typeof(t.e->'status_code') AS t_status_code, jsonb_typeof(t.e->'success') AS t_success,
           jsonb_typeof(t.e->'error_message') AS t_error_message, jsonb_typeof(t.e->'file_type') AS t_file_type,
           jsonb_typeof(t.e->'files') AS t_files, jsonb_typeof(t.e->'bytes') AS t_bytes,
           jsonb_typeof(t.e->'tokens_in') AS t_tokens_in, jsonb_typeof(t.e->'tokens_out') AS t_tokens_out,
           jsonb_typeof(t.e->'cached') AS t_cached, jsonb_typeof(t.e->'cost_usd') AS t_cost_usd,
           jsonb_typeof(t.e->'potential_cost_usd') AS t_potential_cost_usd, jsonb_typeof(t.e->'latency_ms') AS t_latency_ms,
           jsonb_typeof(t.e->'quantity') AS t_quantity, jsonb_typeof(t.e->'idempotency_key') AS t_idempotency_key,
           jsonb_typeof(t.e->'properties') AS t_properties,
           t.e->>'account_id' AS s_account_id, t.e->>'api_key_id' AS s_api_key_id, t.e->>'occurred_at' AS s_occurred_at, t.e->>'event_type' AS s_event_type, t.e->>'provider' AS s_provider, t.e->>'model' AS s_model, t.e->>'endpoint' AS s_endpoint, t.e->>'method' AS s_method, t.e->>'error_message' AS s_error_message, t.e->>'file_type' AS s_file_type, t.e->>'idempotency_key' AS s_idempotency_key,
           CASE jsonb_typeof(t.e->'status_code') WHEN 'number' THEN (t.e->'status_code')::numeric WHEN 'string' THEN CASE WHEN (t.e->>'status_code') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$' THEN (t.e->>'status_code')::numeric END END AS n_status_code, CASE jsonb_typeof(t.e->'files') WHEN 'number' THEN (t.e->'files')::numeric WHEN 'string' THEN CASE WHEN (t.e->>'files') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$' THEN (t.e->>'files')::numeric END END AS n_files,
           CASE jsonb_typeof(t.e->'bytes') WHEN 'number' THEN (t.e->'bytes')::numeric WHEN 'string' THEN CASE WHEN (t.e->>'bytes') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$' THEN (t.e->>'bytes')::numeric END END AS n_bytes, CASE jsonb_typeof(t.e->'tokens_in') WHEN 'number' THEN (t.e->'tokens_in')::numeric WHEN 'string' THEN CASE WHEN (t.e->>'tokens_in') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$' THEN (t.e->>'tokens_in')::numeric END END AS n_tokens_in,
           CASE jsonb_typeof(t.e->'tokens_out') WHEN 'number' THEN (t.e->'tokens_out')::numeric WHEN 'string' THEN CASE WHEN (t.e->>'tokens_out') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$' THEN (t.e->>'tokens_out')::numeric END END AS n_tokens_out, CASE jsonb_typeof(t.e->'cost_usd') WHEN 'number' THEN (t.e->'cost_usd')::numeric WHEN 'string' THEN CASE WHEN (t.e->>'cost_usd') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$' THEN (t.e->>'cost_usd')::numeric END END AS n_cost_usd,
           CASE jsonb_typeof(t.e->'potential_cost_usd') WHEN 'number' THEN (t.e->'potential_cost_usd')::numeric WHEN 'string' THEN CASE WHEN (t.e->>'potential_cost_usd') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$' THEN (t.e->>'potential_cost_usd')::numeric END END AS n_potential_cost_usd, CASE jsonb_typeof(t.e->'latency_ms') WHEN 'number' THEN (t.e->'latency_ms')::numeric WHEN 'string' THEN CASE WHEN (t.e->>'latency_ms') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$' THEN (t.e->>'latency_ms')::numeric END END AS n_latency_ms,
           CASE jsonb_typeof(t.e->'quantity') WHEN 'number' THEN (t.e->'quantity')::numeric WHEN 'string' THEN CASE WHEN (t.e->>'quantity') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$' THEN (t.e->>'quantity')::numeric END END AS n_quantity
    FROM jsonb_array_elements(p_events) WITH ORDINALITY AS t(e, ord)
  ),
  -- Materialized so that each check is computed once, not copied into every later use.
  checked AS MATERIALIZED (
    -- the first problem of each item, in field order, as 'code|message'. One CASE per field,
    -- entered only when the field is present, and COALESCE stops at the first problem: an
    -- item pays for the fields it has, not for all 23.
    SELECT i.*, l.error_message_max_length, l.max_future_skew, COALESCE(
      CASE
        WHEN i.e_type <> 'object' THEN format('invalid_event|item %s: must be a JSON object (got %s)', i.item_index, i.e_type)
        WHEN i.e - '{account_id,api_key_id,occurred_at,event_type,provider,model,endpoint,method,status_code,success,error_message,file_type,files,bytes,tokens_in,tokens_out,cached,cost_usd,potential_cost_usd,latency_ms,quantity,idempotency_key,properties}'::text[] <> '{}'::jsonb
          THEN format('unknown_field|%s: unknown field', (SELECT min(k) FROM jsonb_object_keys(i.e - '{account_id,api_key_id,occurred_at,event_type,provider,model,endpoint,method,status_code,success,error_message,file_type,files,bytes,tokens_in,tokens_out,cached,cost_usd,potential_cost_usd,latency_ms,quantity,idempotency_key,properties}'::text[]) AS k))
      END,
      CASE WHEN i.t_account_id IS NOT NULL THEN CASE
        WHEN i.t_account_id NOT IN ('string', 'null') THEN format('invalid_type|account_id: must be a UUID string (got %s)', i.t_account_id)
        WHEN i.t_account_id = 'string' AND NOT (length(i.s_account_id) = 36 AND i.s_account_id ~ '^[0-9a-fA-F-]+$' AND substr(i.s_account_id, 9, 1) = '-' AND substr(i.s_account_id, 14, 1) = '-' AND substr(i.s_account_id, 19, 1) = '-' AND substr(i.s_account_id, 24, 1) = '-' AND length(replace(i.s_account_id, '-', '')) = 32)
          THEN 'invalid_value|account_id: must be a UUID'
      END END,
      CASE WHEN i.t_api_key_id IS NOT NULL THEN CASE
        WHEN i.t_api_key_id NOT IN ('string', 'null') THEN format('invalid_type|api_key_id: must be a UUID string (got %s)', i.t_api_key_id)
        WHEN i.t_api_key_id = 'string' AND NOT (length(i.s_api_key_id) = 36 AND i.s_api_key_id ~ '^[0-9a-fA-F-]+$' AND substr(i.s_api_key_id, 9, 1) = '-' AND substr(i.s_api_key_id, 14, 1) = '-' AND substr(i.s_api_key_id, 19, 1) = '-' AND substr(i.s_api_key_id, 24, 1) = '-' AND length(replace(i.s_api_key_id, '-', '')) = 32)
          THEN 'invalid_value|api_key_id: must be a UUID'
      END END,
      CASE
        WHEN coalesce(i.t_account_id, 'null') = 'null' AND coalesce(i.t_api_key_id, 'null') = 'null'
          THEN 'missing_tenant|account_id, api_key_id: one of them is required'
      END,
      CASE WHEN i.t_occurred_at IS NOT NULL THEN CASE
        WHEN i.t_occurred_at NOT IN ('string', 'null') THEN format('invalid_type|occurred_at: must be an ISO 8601 string (got %s)', i.t_occurred_at)
        WHEN i.t_occurred_at = 'string' AND NOT (CASE
            WHEN length(i.s_occurred_at) > 40
              OR i.s_occurred_at !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN false
            WHEN substr(i.s_occurred_at, 1, 4) < '1970' COLLATE "C" OR substr(i.s_occurred_at, 6, 2) NOT BETWEEN ('01' COLLATE "C") AND ('12' COLLATE "C")
              OR substr(i.s_occurred_at, 9, 2) NOT BETWEEN ('01' COLLATE "C") AND ('31' COLLATE "C") OR substr(i.s_occurred_at, 12, 2) > '23' COLLATE "C"
              OR substr(i.s_occurred_at, 15, 2) > '59' COLLATE "C" OR (substr(i.s_occurred_at, 17, 1) = ':' AND substr(i.s_occurred_at, 18, 2) > '59' COLLATE "C") THEN false
            WHEN substr(right(i.s_occurred_at, 6), 1, 1) IN ('+', '-') AND substr(right(i.s_occurred_at, 6), 4, 1) = ':'
              THEN substr(right(i.s_occurred_at, 5), 1, 2) <= '15' COLLATE "C" AND right(i.s_occurred_at, 2) <= '59' COLLATE "C" AND (substr(i.s_occurred_at, 9, 2) <= '28' COLLATE "C" OR substr(i.s_occurred_at, 9, 2)::int <= extract(day from make_date(substr(i.s_occurred_at, 1, 4)::int, substr(i.s_occurred_at, 6, 2)::int, 1) + interval '1 month - 1 day'))
            WHEN substr(right(i.s_occurred_at, 5), 1, 1) IN ('+', '-')
              THEN substr(right(i.s_occurred_at, 4), 1, 2) <= '15' COLLATE "C" AND right(i.s_occurred_at, 2) <= '59' COLLATE "C" AND (substr(i.s_occurred_at, 9, 2) <= '28' COLLATE "C" OR substr(i.s_occurred_at, 9, 2)::int <= extract(day from make_date(substr(i.s_occurred_at, 1, 4)::int, substr(i.s_occurred_at, 6, 2)::int, 1) + interval '1 month - 1 day'))
            WHEN substr(right(i.s_occurred_at, 3), 1, 1) IN ('+', '-')
              THEN right(i.s_occurred_at, 2) <= '15' COLLATE "C" AND (substr(i.s_occurred_at, 9, 2) <= '28' COLLATE "C" OR substr(i.s_occurred_at, 9, 2)::int <= extract(day from make_date(substr(i.s_occurred_at, 1, 4)::int, substr(i.s_occurred_at, 6, 2)::int, 1) + interval '1 month - 1 day'))
            ELSE (substr(i.s_occurred_at, 9, 2) <= '28' COLLATE "C" OR substr(i.s_occurred_at, 9, 2)::int <= extract(day from make_date(substr(i.s_occurred_at, 1, 4)::int, substr(i.s_occurred_at, 6, 2)::int, 1) + interval '1 month - 1 day'))
          END)
          THEN 'invalid_value|occurred_at: must be an ISO 8601 timestamp with a UTC offset (e.g. 2026-11-22T10:00:00Z), from 1970 on'
      END END,
      CASE
        WHEN coalesce(i.t_event_type, 'null') = 'null' THEN 'missing_field|event_type: is required'
      END,
      CASE WHEN i.t_event_type IS NOT NULL THEN CASE
        WHEN i.t_event_type <> 'string' THEN format('invalid_type|event_type: must be a string (got %s)', i.t_event_type)
        WHEN length(i.s_event_type) > 64 THEN 'too_long|event_type: at most 64 characters'
        WHEN i.s_event_type !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]*$' THEN 'invalid_value|event_type: must be a slug (letters, digits, _ . : -)'
      END END,
      CASE WHEN i.t_provider IS NOT NULL THEN CASE
        WHEN i.t_provider NOT IN ('string', 'null') THEN format('invalid_type|provider: must be a string (got %s)', i.t_provider)
        WHEN i.s_provider = '' THEN 'invalid_value|provider: must not be empty'
        WHEN length(i.s_provider) > 200 THEN 'too_long|provider: at most 200 characters'
      END END,
      CASE WHEN i.t_model IS NOT NULL THEN CASE
        WHEN i.t_model NOT IN ('string', 'null') THEN format('invalid_type|model: must be a string (got %s)', i.t_model)
        WHEN i.s_model = '' THEN 'invalid_value|model: must not be empty'
        WHEN length(i.s_model) > 200 THEN 'too_long|model: at most 200 characters'
      END END,
      CASE WHEN i.t_endpoint IS NOT NULL THEN CASE
        WHEN i.t_endpoint NOT IN ('string', 'null') THEN format('invalid_type|endpoint: must be a string (got %s)', i.t_endpoint)
        WHEN i.s_endpoint = '' THEN 'invalid_value|endpoint: must not be empty'
        WHEN length(i.s_endpoint) > 2000 THEN 'too_long|endpoint: at most 2000 characters'
      END END,
      CASE WHEN i.t_method IS NOT NULL THEN CASE
        WHEN i.t_method NOT IN ('string', 'null') THEN format('invalid_type|method: must be a string (got %s)', i.t_method)
        WHEN i.s_method !~ '^[A-Za-z_-]{1,16}$' THEN 'invalid_value|method: must be 1 to 16 letters (e.g. GET)'
      END END,
      CASE WHEN i.t_status_code IS NOT NULL THEN CASE
        WHEN i.t_status_code NOT IN ('number', 'string', 'null') OR (i.t_status_code = 'string' AND i.n_status_code IS NULL)
          THEN format('invalid_type|status_code: must be an integer (got %s)', i.t_status_code)
        WHEN i.n_status_code NOT BETWEEN 100 AND 599 OR i.n_status_code <> trunc(i.n_status_code)
          THEN 'out_of_range|status_code: must be an integer from 100 to 599'
      END END,
      CASE WHEN i.t_success IS NOT NULL THEN CASE
        WHEN i.t_success NOT IN ('boolean', 'null') THEN format('invalid_type|success: must be a boolean (got %s)', i.t_success)
      END END,
      CASE WHEN i.t_error_message IS NOT NULL THEN CASE
        WHEN i.t_error_message NOT IN ('string', 'null') THEN format('invalid_type|error_message: must be a string (got %s)', i.t_error_message)
      END END,
      CASE WHEN i.t_file_type IS NOT NULL THEN CASE
        WHEN i.t_file_type NOT IN ('string', 'null') THEN format('invalid_type|file_type: must be a MIME type string (got %s)', i.t_file_type)
        WHEN length(i.s_file_type) > 255 THEN 'too_long|file_type: at most 255 characters'
        WHEN i.s_file_type !~ '^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$'
          THEN 'invalid_value|file_type: must be a MIME type such as image/png'
      END END,
      CASE WHEN i.t_files IS NOT NULL THEN CASE
        WHEN i.t_files IS NOT NULL AND i.t_files <> 'null' AND i.n_files IS NULL THEN format('invalid_type|files: must be a non-negative integer (got %s)', i.t_files)
        WHEN i.n_files < 0 OR i.n_files <> trunc(i.n_files) OR i.n_files > 9223372036854775807 THEN 'out_of_range|files: must be a whole number from 0 to 9223372036854775807'
      END END,
      CASE WHEN i.t_bytes IS NOT NULL THEN CASE
        WHEN i.t_bytes IS NOT NULL AND i.t_bytes <> 'null' AND i.n_bytes IS NULL THEN format('invalid_type|bytes: must be a non-negative integer (got %s)', i.t_bytes)
        WHEN i.n_bytes < 0 OR i.n_bytes <> trunc(i.n_bytes) OR i.n_bytes > 9223372036854775807 THEN 'out_of_range|bytes: must be a whole number from 0 to 9223372036854775807'
      END END,
      CASE WHEN i.t_tokens_in IS NOT NULL THEN CASE
        WHEN i.t_tokens_in IS NOT NULL AND i.t_tokens_in <> 'null' AND i.n_tokens_in IS NULL THEN format('invalid_type|tokens_in: must be a non-negative integer (got %s)', i.t_tokens_in)
        WHEN i.n_tokens_in < 0 OR i.n_tokens_in <> trunc(i.n_tokens_in) OR i.n_tokens_in > 9223372036854775807 THEN 'out_of_range|tokens_in: must be a whole number from 0 to 9223372036854775807'
      END END,
      CASE WHEN i.t_tokens_out IS NOT NULL THEN CASE
        WHEN i.t_tokens_out IS NOT NULL AND i.t_tokens_out <> 'null' AND i.n_tokens_out IS NULL THEN format('invalid_type|tokens_out: must be a non-negative integer (got %s)', i.t_tokens_out)
        WHEN i.n_tokens_out < 0 OR i.n_tokens_out <> trunc(i.n_tokens_out) OR i.n_tokens_out > 9223372036854775807 THEN 'out_of_range|tokens_out: must be a whole number from 0 to 9223372036854775807'
      END END,
      CASE WHEN i.t_cached IS NOT NULL THEN CASE
        WHEN i.t_cached NOT IN ('boolean', 'null') THEN format('invalid_type|cached: must be a boolean (got %s)', i.t_cached)
      END END,
      CASE WHEN i.t_cost_usd IS NOT NULL THEN CASE
        WHEN i.t_cost_usd IS NOT NULL AND i.t_cost_usd <> 'null' AND i.n_cost_usd IS NULL THEN format('invalid_type|cost_usd: must be a decimal number or string (got %s)', i.t_cost_usd)
        WHEN i.n_cost_usd < 0 OR round(i.n_cost_usd, 12) >= 1e12 THEN 'out_of_range|cost_usd: must be from 0 to 999999999999'
      END END,
      CASE WHEN i.t_potential_cost_usd IS NOT NULL THEN CASE
        WHEN i.t_potential_cost_usd IS NOT NULL AND i.t_potential_cost_usd <> 'null' AND i.n_potential_cost_usd IS NULL THEN format('invalid_type|potential_cost_usd: must be a decimal number or string (got %s)', i.t_potential_cost_usd)
        WHEN i.n_potential_cost_usd < 0 OR round(i.n_potential_cost_usd, 12) >= 1e12 THEN 'out_of_range|potential_cost_usd: must be from 0 to 999999999999'
      END END,
      CASE WHEN i.t_latency_ms IS NOT NULL THEN CASE
        WHEN i.t_latency_ms IS NOT NULL AND i.t_latency_ms <> 'null' AND i.n_latency_ms IS NULL THEN format('invalid_type|latency_ms: must be a non-negative number (got %s)', i.t_latency_ms)
        WHEN i.n_latency_ms < 0 OR i.n_latency_ms > 2147483647 THEN 'out_of_range|latency_ms: must be from 0 to 2147483647'
      END END,
      CASE WHEN i.t_quantity IS NOT NULL THEN CASE
        WHEN i.t_quantity IS NOT NULL AND i.t_quantity <> 'null' AND i.n_quantity IS NULL THEN format('invalid_type|quantity: must be a decimal number or string (got %s)', i.t_quantity)
        WHEN i.n_quantity < 0 OR round(i.n_quantity, 12) >= 1e12 THEN 'out_of_range|quantity: must be from 0 to 999999999999'
      END END,
      CASE WHEN i.t_idempotency_key IS NOT NULL THEN CASE
        WHEN i.t_idempotency_key NOT IN ('string', 'null') THEN format('invalid_type|idempotency_key: must be a string (got %s)', i.t_idempotency_key)
        WHEN i.s_idempotency_key = '' THEN 'invalid_value|idempotency_key: must not be empty'
        WHEN length(i.s_idempotency_key) > 255 THEN 'too_long|idempotency_key: at most 255 characters'
      END END,
      CASE WHEN i.t_properties IS NOT NULL THEN CASE
        WHEN i.t_properties NOT IN ('object', 'null') THEN format('invalid_type|properties: must be a JSON object (got %s)', i.t_properties)
        WHEN i.t_properties = 'object' AND octet_length((i.e->'properties')::text) > l.properties_max_bytes
          THEN format('too_large|properties: %s bytes, more than the limit of %s (setting ingest.properties_max_bytes)',
                          octet_length((i.e->'properties')::text), l.properties_max_bytes)
      END END
    ) AS problem
    FROM items i CROSS JOIN limits l
  ),
  typed AS (
    -- typed values of the items that passed every check (each cast is safe by then); the
    -- tenant is read from any item that names it well, so its refusals reach its members
    SELECT c.item_index, c.e, c.problem, c.max_future_skew, c.s_occurred_at,
           CASE WHEN c.t_account_id = 'string' AND (length(c.s_account_id) = 36 AND c.s_account_id ~ '^[0-9a-fA-F-]+$' AND substr(c.s_account_id, 9, 1) = '-' AND substr(c.s_account_id, 14, 1) = '-' AND substr(c.s_account_id, 19, 1) = '-' AND substr(c.s_account_id, 24, 1) = '-' AND length(replace(c.s_account_id, '-', '')) = 32)
                THEN (c.s_account_id)::uuid END AS given_account_id,
           CASE WHEN c.t_api_key_id = 'string' AND (length(c.s_api_key_id) = 36 AND c.s_api_key_id ~ '^[0-9a-fA-F-]+$' AND substr(c.s_api_key_id, 9, 1) = '-' AND substr(c.s_api_key_id, 14, 1) = '-' AND substr(c.s_api_key_id, 19, 1) = '-' AND substr(c.s_api_key_id, 24, 1) = '-' AND length(replace(c.s_api_key_id, '-', '')) = 32)
                THEN (c.s_api_key_id)::uuid END AS given_api_key_id,
           CASE WHEN c.problem IS NULL THEN coalesce((c.s_occurred_at)::timestamptz, now()) END AS occurred_at,
           c.s_event_type AS event_type, c.s_provider AS provider, c.s_model AS model,
           c.s_endpoint AS endpoint, upper(c.s_method) AS method,
           CASE WHEN c.problem IS NULL THEN c.n_status_code::smallint END AS status_code,
           CASE WHEN c.problem IS NULL AND c.t_success = 'boolean' THEN (c.e->'success')::boolean END AS success,
           left(c.s_error_message, c.error_message_max_length) AS error_message,
           lower(c.s_file_type) AS file_type,
           CASE WHEN c.problem IS NULL THEN c.n_files::bigint END AS files,
           CASE WHEN c.problem IS NULL THEN c.n_bytes::bigint END AS bytes,
           CASE WHEN c.problem IS NULL THEN c.n_tokens_in::bigint END AS tokens_in,
           CASE WHEN c.problem IS NULL THEN c.n_tokens_out::bigint END AS tokens_out,
           CASE WHEN c.problem IS NULL THEN CASE WHEN c.t_cached = 'boolean' THEN (c.e->'cached')::boolean ELSE false END END AS cached,
           CASE WHEN c.problem IS NULL THEN round(c.n_cost_usd, 12) END AS cost_usd,
           CASE WHEN c.problem IS NULL THEN round(c.n_potential_cost_usd, 12) END AS potential_cost_usd,
           CASE WHEN c.problem IS NULL THEN round(c.n_latency_ms)::integer END AS latency_ms,
           CASE WHEN c.problem IS NULL THEN round(coalesce(c.n_quantity, 1), 12) END AS quantity,
           c.s_idempotency_key AS idempotency_key,
           CASE WHEN c.t_properties = 'object' THEN c.e->'properties' END AS properties
    FROM checked c
  ),
  resolved AS MATERIALIZED (
    -- the tenant behind each item: the key's account, the given account, and whether they agree
    SELECT t.*, k.account_id AS key_account_id, k.revoked_at AS key_revoked_at, k.expires_at AS key_expires_at,
           a.id AS found_account_id,
           -- whose refusal it is: the key's account when a key was named (so its owners see a
           -- misused or revoked key, and nobody else learns about it), else the account's
           coalesce(k.account_id, a.id) AS known_account_id,
           CASE
             WHEN t.problem IS NOT NULL THEN t.problem
             WHEN t.given_api_key_id IS NOT NULL AND k.id IS NULL
               THEN format('unknown_api_key|api_key_id: no API key %s', t.given_api_key_id)
             WHEN k.revoked_at <= t.occurred_at
               THEN format('revoked_api_key|api_key_id: key %s was revoked at %s', k.id, k.revoked_at)
             WHEN k.expires_at <= t.occurred_at
               THEN format('expired_api_key|api_key_id: key %s expired at %s', k.id, k.expires_at)
             WHEN t.given_account_id IS NOT NULL AND k.account_id IS NOT NULL AND k.account_id <> t.given_account_id
               THEN format('account_mismatch|api_key_id: key %s does not belong to account %s', k.id, t.given_account_id)
             WHEN a.id IS NULL
               THEN format('account_not_found|account_id: no account %s', coalesce(t.given_account_id, k.account_id))
             WHEN t.occurred_at > now() + t.max_future_skew
               THEN format('future_timestamp|occurred_at: %s is more than %s ahead of the database clock (setting ingest.max_future_skew)',
                           t.s_occurred_at, t.max_future_skew)
           END AS final_problem
    FROM typed t
    LEFT JOIN tally.api_keys k ON k.id = t.given_api_key_id
    LEFT JOIN tally.accounts a ON a.id = coalesce(t.given_account_id, k.account_id)
  )
  -- valid items priced: a cached call costs 0 unless given; potential is what it would have cost
  SELECT x.item_index, x.e, split_part(x.outcome, '|', 1), substr(x.outcome, strpos(x.outcome, '|') + 1),
         x.known_account_id, x.found_account_id, x.occurred_at, x.given_api_key_id, x.event_type, x.provider, x.model,
         x.endpoint, x.method, x.status_code,
         coalesce(x.success, x.status_code < 400, nullif(x.error_message, '') IS NULL),
         x.error_message, x.file_type, x.files, x.bytes, x.tokens_in, x.tokens_out, x.cached,
         coalesce(x.cost_usd, CASE WHEN x.cached THEN 0 ELSE x.price END),
         coalesce(x.potential_cost_usd, CASE WHEN x.cached THEN x.price ELSE coalesce(x.cost_usd, x.price) END),
         x.cost_usd IS NOT NULL, x.potential_cost_usd IS NOT NULL,
         x.latency_ms, x.quantity, x.idempotency_key, x.properties
  FROM (
    SELECT r.*, price.usd AS price,
           coalesce(r.final_problem, CASE WHEN price.usd >= 1e12
             THEN 'out_of_range|tokens_in, tokens_out: the computed cost reaches 10^12 USD' END) AS outcome
    FROM resolved r
    LEFT JOIN LATERAL (
      SELECT round((coalesce(r.tokens_in, 0) * mp.input_usd_per_mtok + coalesce(r.tokens_out, 0) * mp.output_usd_per_mtok) / 1000000, 12) AS usd
      FROM tally.model_prices mp
      WHERE r.final_problem IS NULL
        AND (r.tokens_in IS NOT NULL OR r.tokens_out IS NOT NULL)
        AND (r.cost_usd IS NULL OR (r.cached AND r.potential_cost_usd IS NULL))
        AND mp.provider = r.provider AND mp.model = r.model AND mp.effective_from <= r.occurred_at
      ORDER BY mp.effective_from DESC
      LIMIT 1
    ) price ON true
  ) x;
END
$_$;

--
-- Name: FUNCTION _parse_events(p_events jsonb, p_index_base bigint); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._parse_events(p_events jsonb, p_index_base bigint) IS 'Validates a JSON array of events without raising: one row per item with its index (p_index_base + position), the item as sent, and either code + message or the typed event (tenant resolved, success derived, cost priced from tally.model_prices). plpgsql, so its statement is planned once per session.';

--
-- Name: _raise(text, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._raise(p_code text, p_message text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_sqlstate text;
BEGIN
  SELECT c.sqlstate INTO v_sqlstate FROM tally.error_codes c WHERE c.code = p_code;
  -- A code missing from the table is a bug the tests catch; it still reaches the caller.
  RAISE EXCEPTION USING MESSAGE = p_message, ERRCODE = coalesce(v_sqlstate, 'P0001'), HINT = p_code;
END
$$;

--
-- Name: FUNCTION _raise(p_code text, p_message text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._raise(p_code text, p_message text) IS 'Raises the Tally error p_code (carried in HINT) with the SQLSTATE tally.error_codes gives it, and a message naming the field.';

--
-- Name: _raise(text, text, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._raise(p_code text, p_sqlstate text, p_message text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_sqlstate text;
BEGIN
  SELECT c.sqlstate INTO v_sqlstate FROM tally.error_codes c WHERE c.code = p_code;
  RAISE EXCEPTION USING MESSAGE = p_message, ERRCODE = coalesce(v_sqlstate, p_sqlstate, 'P0001'), HINT = p_code;
END
$$;

--
-- Name: FUNCTION _raise(p_code text, p_sqlstate text, p_message text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._raise(p_code text, p_sqlstate text, p_message text) IS 'Compatibility form of tally._raise(code, message): the SQLSTATE comes from tally.error_codes; p_sqlstate only for a code the table lacks.';

--
-- Name: _rebuild_rollups(text[], uuid[], text[]); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._rebuild_rollups(p_grains text[], p_accounts uuid[], p_buckets text[]) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "DateStyle" TO 'ISO'
    SET "TimeZone" TO 'UTC'
    AS $_$
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

    -- an hourly bucket's totals, and a daily or monthly bucket's dimension rows, hold the same events: rebuilt with it
    FOREACH v_table IN ARRAY CASE v_grain WHEN 'hourly' THEN ARRAY['usage_hourly', 'usage_hourly_totals']
                                          ELSE ARRAY['usage_' || v_grain, 'usage_' || v_grain || '_by_dimension'] END LOOP
      EXECUTE format(
        'DELETE FROM tally.%I u USING unnest($2, $3, $4) AS k(grain, account_id, bucket)
          WHERE k.grain = $1 AND u.account_id = k.account_id AND u.bucket = k.bucket::%s',
        v_table, CASE v_grain WHEN 'hourly' THEN 'timestamptz' ELSE 'date' END)
      USING v_grain, p_grains, p_accounts, p_buckets;
    END LOOP;
    PERFORM tally._fold_rollups('ranges', 0, v_watermark,
      CASE v_grain WHEN 'hourly' THEN ARRAY['hourly', 'hourly_totals'] ELSE ARRAY[v_grain, v_grain || '_by_dimension'] END,
      v_accounts, v_from, v_to, v_keys);
  END LOOP;
  RETURN v_counts;
END
$_$;

--
-- Name: FUNCTION _rebuild_rollups(p_grains text[], p_accounts uuid[], p_buckets text[]); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._rebuild_rollups(p_grains text[], p_accounts uuid[], p_buckets text[]) IS 'Deletes the aggregate rows of the given buckets (parallel arrays grain, account_id, bucket text; an hourly bucket with its totals, a daily or monthly bucket with its rows by dimension) and folds their events again (id <= watermark, not voided). Refuses (past_retention) a bucket starting before the raw events'' retention cutoff that the fold would recreate, since some of its events may be gone. Returns {hourly, daily, monthly} bucket counts. Callers hold the rollups'' lock.';

--
-- Name: _reject_sqlstate(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._reject_sqlstate(p_code text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    select case when p_code in ('unknown_api_key', 'revoked_api_key', 'expired_api_key') then '28000'
                when p_code = 'account_not_found' then 'P0002'
                else '22023' end
  $$;

--
-- Name: FUNCTION _reject_sqlstate(p_code text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._reject_sqlstate(p_code text) IS 'The SQLSTATE record_event raises for a rejection code: 28000 for key problems, P0002 for account_not_found, else 22023.';

--
-- Name: _require_account_role(uuid, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._require_account_role(p_account_id uuid, p_role text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  IF p_account_id IS NULL THEN
    PERFORM tally._raise('invalid_parameter', 'account_id is required');
  END IF;
  IF tally._caller_is_service() THEN
    IF NOT EXISTS (SELECT 1 FROM tally.accounts WHERE id = p_account_id) THEN
      PERFORM tally._raise('account_not_found', format('account_id: account %s does not exist', p_account_id));
    END IF;
  ELSIF NOT tally.has_role_on_account(p_account_id, p_role) THEN
    -- the same answer whether the account exists or not; it names only what the caller gave
    PERFORM tally._raise('forbidden', format('account_id: requires role %s on account %s', p_role, p_account_id));
  END IF;
END
$$;

--
-- Name: FUNCTION _require_account_role(p_account_id uuid, p_role text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._require_account_role(p_account_id uuid, p_role text) IS 'Guard used by the management functions. A service caller passes when the account exists (else account_not_found, P0002). Anyone else needs at least p_role on it; an account they are not a member of and one that does not exist get the same forbidden (42501).';

--
-- Name: _require_read_committed(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._require_read_committed(p_function text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    PERFORM tally._raise('invalid_parameter', '22023',
      format('%s needs READ COMMITTED isolation (this transaction is %s)', p_function, current_setting('transaction_isolation')));
  END IF;
END
$$;

--
-- Name: FUNCTION _require_read_committed(p_function text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._require_read_committed(p_function text) IS 'Raises invalid_parameter unless the transaction runs at READ COMMITTED.';

--
-- Name: _require_usage_reader(uuid); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._require_usage_reader(p_account_id uuid, OUT timezone text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    AS $$
BEGIN
  PERFORM tally._require_account_role(p_account_id, 'viewer');
  SELECT a.timezone INTO timezone FROM tally.accounts a WHERE a.id = p_account_id;
END
$$;

--
-- Name: FUNCTION _require_usage_reader(p_account_id uuid, OUT timezone text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._require_usage_reader(p_account_id uuid, OUT timezone text) IS 'Guard of the dashboard functions: service callers for an existing account (else account_not_found), members of it with any role, anyone else forbidden (42501); returns the account''s time zone.';

--
-- Name: _retention_floor(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._retention_floor(p_kind text) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    select case p_kind
      when 'monthly' then '-infinity'::timestamptz
      else now() - tally._setting_interval('retention.' || p_kind)
    end
  $$;

--
-- Name: FUNCTION _retention_floor(p_kind text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._retention_floor(p_kind text) IS 'The earliest time still kept for p_kind (events, hourly, daily, rejected_events; monthly: -infinity), from the retention.* settings.';

--
-- Name: _role_rank(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._role_rank(p_role text) RETURNS integer
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ select case p_role when 'owner' then 4 when 'admin' then 3 when 'member' then 2 when 'viewer' then 1 else 0 end $$;

--
-- Name: FUNCTION _role_rank(p_role text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._role_rank(p_role text) IS 'Orders member roles: owner 4, admin 3, member 2, viewer 1, anything else 0.';

--
-- Name: _rollup_dimensions(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._rollup_dimensions() RETURNS TABLE(ord integer, dimension text, value_sql text)
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
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

--
-- Name: FUNCTION _rollup_dimensions(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._rollup_dimensions() IS 'The dimensions of usage_daily_by_dimension and usage_monthly_by_dimension, with the expression of a row b (tuple columns plus status_class) giving its value as text.';

--
-- Name: _rollup_grains(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._rollup_grains() RETURNS TABLE(ord integer, grain text, table_name text, bucket_type text, uses_timezone boolean, event_bucket text, fold_bucket text)
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    select * from (values
      (1, 'hourly', 'usage_hourly', 'timestamptz', false, 'date_trunc(''hour'', e.occurred_at, ''UTC'')', 'b.hour_utc'),
      (2, 'daily', 'usage_daily', 'date', true, '(e.occurred_at AT TIME ZONE a.timezone)::date', 'b.local_day'),
      (3, 'monthly', 'usage_monthly', 'date', true, 'date_trunc(''month'', e.occurred_at AT TIME ZONE a.timezone)::date', 'date_trunc(''month'', b.local_day)::date')
    ) as g(ord, grain, table_name, bucket_type, uses_timezone, event_bucket, fold_bucket)
  $$;

--
-- Name: FUNCTION _rollup_grains(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._rollup_grains() IS 'The rollup grains: grain, its table, the bucket type, whether the bucket depends on the account''s time zone, the bucket of an event e of account a (event_bucket), and the fold''s bucket from its per-hour, per-local-day pass (fold_bucket).';

--
-- Name: _rollup_metrics(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._rollup_metrics() RETURNS TABLE(ord integer, name text, sql_type text, combine text, event_value text, group_value text, columns text[])
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
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

--
-- Name: FUNCTION _rollup_metrics(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._rollup_metrics() IS 'The rollup metrics in column order, the one list the fold, tally.verify_rollups and the *_live views are generated from: name (the column of usage_hourly/daily/monthly), sql_type, combine (sum, max or histogram), event_value (the metric of one event e), group_value (of a group of events e) and the event columns they read.';

--
-- Name: _setting_int(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._setting_int(p_name text) RETURNS bigint
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ select s.value::bigint from tally.settings s where s.name = p_name $$;

--
-- Name: FUNCTION _setting_int(p_name text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._setting_int(p_name text) IS 'The integer value of a setting (NULL if there is no such setting).';

--
-- Name: _setting_interval(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._setting_interval(p_name text) RETURNS interval
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ select s.value::interval from tally.settings s where s.name = p_name $$;

--
-- Name: FUNCTION _setting_interval(p_name text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._setting_interval(p_name text) IS 'The interval value of a setting (NULL if there is no such setting).';

--
-- Name: _status_class_sql(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._status_class_sql(p_alias text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$ select format('((%1$I.status_code / 100)::text || ''xx'')', p_alias) $_$;

--
-- Name: FUNCTION _status_class_sql(p_alias text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._status_class_sql(p_alias text) IS 'The status class (1xx..5xx; NULL when there is no status code) of the status_code column of the given alias, as SQL text.';

--
-- Name: _token_cost(bigint, bigint, numeric, numeric); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._token_cost(p_tokens_in bigint, p_tokens_out bigint, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric) RETURNS numeric
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  RETURN round((coalesce(p_tokens_in, 0) * p_input_usd_per_mtok + coalesce(p_tokens_out, 0) * p_output_usd_per_mtok) / 1000000, 12);
END
$$;

--
-- Name: FUNCTION _token_cost(p_tokens_in bigint, p_tokens_out bigint, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._token_cost(p_tokens_in bigint, p_tokens_out bigint, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric) IS 'USD cost of tokens_in and tokens_out at the given per-million prices, rounded to 12 decimals (the precision of tally.events.cost_usd).';

--
-- Name: _truncate_empty_default_partition(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._truncate_empty_default_partition() RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET lock_timeout TO '1s'
    AS $$
BEGIN
  -- no rollup reads the ledger until this transaction commits (see the file's header)
  IF NOT pg_try_advisory_xact_lock(hashtext('tally.run_rollups')) THEN
    RETURN false;
  END IF;
  -- held already after an attach; bounded anyway, and not worth a stall if not granted
  BEGIN
    LOCK TABLE tally.events_default IN ACCESS EXCLUSIVE MODE;
  EXCEPTION WHEN lock_not_available THEN
    RETURN false;
  END;
  IF EXISTS (SELECT 1 FROM tally.events_default) THEN
    RETURN false;
  END IF;
  TRUNCATE tally.events_default;
  RETURN true;
END
$$;

--
-- Name: FUNCTION _truncate_empty_default_partition(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._truncate_empty_default_partition() IS 'After rows were moved out of tally.events_default: truncates it when it is empty and the rollups'' lock is free (its ACCESS EXCLUSIVE lock is already held after an attach), so no dead tuple slows the reads that scan it. Returns whether it truncated.';

--
-- Name: _usage_between(uuid, timestamp with time zone[], timestamp with time zone[], uuid[], text[], text[], text[], text[], text[]); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._usage_between(p_account_id uuid, p_lo timestamp with time zone[], p_hi timestamp with time zone[], p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) RETURNS TABLE(idx integer, requests bigint, successful bigint, failed bigint, cached bigint, files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, cost_usd numeric, potential_cost_usd numeric, quantity numeric, unpriced bigint, latency_count bigint, latency_sum numeric, latency_max integer, latency_hist bigint[])
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    SET jit TO 'off'
    AS $$
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
      SELECT x.idx, coalesce(sum(x.requests), 0)::bigint AS requests, coalesce(sum(x.successful), 0)::bigint AS successful, coalesce(sum(x.failed), 0)::bigint AS failed, coalesce(sum(x.cached), 0)::bigint AS cached, coalesce(sum(x.files), 0)::numeric AS files, coalesce(sum(x.bytes), 0)::numeric AS bytes, coalesce(sum(x.tokens_in), 0)::numeric AS tokens_in, coalesce(sum(x.tokens_out), 0)::numeric AS tokens_out, coalesce(sum(x.cost_usd), 0)::numeric AS cost_usd, coalesce(sum(x.potential_cost_usd), 0)::numeric AS potential_cost_usd, coalesce(sum(x.quantity), 0)::numeric AS quantity, coalesce(sum(x.latency_count), 0)::bigint AS latency_count, coalesce(sum(x.latency_sum), 0)::numeric AS latency_sum, max(x.latency_max) AS latency_max, ARRAY[coalesce(sum(x.h0), 0)::bigint, coalesce(sum(x.h1), 0)::bigint, coalesce(sum(x.h2), 0)::bigint, coalesce(sum(x.h3), 0)::bigint, coalesce(sum(x.h4), 0)::bigint, coalesce(sum(x.h5), 0)::bigint, coalesce(sum(x.h6), 0)::bigint, coalesce(sum(x.h7), 0)::bigint, coalesce(sum(x.h8), 0)::bigint, coalesce(sum(x.h9), 0)::bigint, coalesce(sum(x.h10), 0)::bigint, coalesce(sum(x.h11), 0)::bigint, coalesce(sum(x.h12), 0)::bigint, coalesce(sum(x.h13), 0)::bigint, coalesce(sum(x.h14), 0)::bigint, coalesce(sum(x.h15), 0)::bigint, coalesce(sum(x.h16), 0)::bigint, coalesce(sum(x.h17), 0)::bigint, coalesce(sum(x.h18), 0)::bigint, coalesce(sum(x.h19), 0)::bigint, coalesce(sum(x.h20), 0)::bigint, coalesce(sum(x.h21), 0)::bigint, coalesce(sum(x.h22), 0)::bigint, coalesce(sum(x.h23), 0)::bigint, coalesce(sum(x.h24), 0)::bigint, coalesce(sum(x.h25), 0)::bigint, coalesce(sum(x.h26), 0)::bigint, coalesce(sum(x.h27), 0)::bigint, coalesce(sum(x.h28), 0)::bigint, coalesce(sum(x.h29), 0)::bigint, coalesce(sum(x.h30), 0)::bigint, coalesce(sum(x.h31), 0)::bigint, coalesce(sum(x.h32), 0)::bigint, coalesce(sum(x.h33), 0)::bigint, coalesce(sum(x.h34), 0)::bigint, coalesce(sum(x.h35), 0)::bigint, coalesce(sum(x.h36), 0)::bigint, coalesce(sum(x.h37), 0)::bigint, coalesce(sum(x.h38), 0)::bigint, coalesce(sum(x.h39), 0)::bigint, coalesce(sum(x.h40), 0)::bigint, coalesce(sum(x.h41), 0)::bigint] AS latency_hist, coalesce(sum(x.unpriced), 0)::bigint AS unpriced
      FROM (
        -- whole days
        SELECT d.idx, u.requests, u.successful, u.failed, u.cached, u.files, u.bytes, u.tokens_in, u.tokens_out, u.cost_usd, u.potential_cost_usd, u.quantity, u.latency_count, u.latency_sum, u.latency_max, u.latency_hist[1] AS h0, u.latency_hist[2] AS h1, u.latency_hist[3] AS h2, u.latency_hist[4] AS h3, u.latency_hist[5] AS h4, u.latency_hist[6] AS h5, u.latency_hist[7] AS h6, u.latency_hist[8] AS h7, u.latency_hist[9] AS h8, u.latency_hist[10] AS h9, u.latency_hist[11] AS h10, u.latency_hist[12] AS h11, u.latency_hist[13] AS h12, u.latency_hist[14] AS h13, u.latency_hist[15] AS h14, u.latency_hist[16] AS h15, u.latency_hist[17] AS h16, u.latency_hist[18] AS h17, u.latency_hist[19] AS h18, u.latency_hist[20] AS h19, u.latency_hist[21] AS h20, u.latency_hist[22] AS h21, u.latency_hist[23] AS h22, u.latency_hist[24] AS h23, u.latency_hist[25] AS h24, u.latency_hist[26] AS h25, u.latency_hist[27] AS h26, u.latency_hist[28] AS h27, u.latency_hist[29] AS h28, u.latency_hist[30] AS h29, u.latency_hist[31] AS h30, u.latency_hist[32] AS h31, u.latency_hist[33] AS h32, u.latency_hist[34] AS h33, u.latency_hist[35] AS h34, u.latency_hist[36] AS h35, u.latency_hist[37] AS h36, u.latency_hist[38] AS h37, u.latency_hist[39] AS h38, u.latency_hist[40] AS h39, u.latency_hist[41] AS h40, u.latency_hist[42] AS h41, u.unpriced
        FROM unnest(v_day_idx, v_day_from, v_day_to) AS d(idx, from_day, to_day)
        JOIN (SELECT r.day, r.requests, r.successful, r.failed, r.cached, r.files, r.bytes, r.tokens_in, r.tokens_out, r.cost_usd, r.potential_cost_usd, r.quantity, r.latency_count, r.latency_sum, r.latency_max, r.latency_hist, r.unpriced
              FROM tally._usage_by(p_account_id, 'day', NULL, NULL, (SELECT min(f) FROM unnest(v_day_from) f), (SELECT max(t) FROM unnest(v_day_to) t), NULL,
                                   p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types) r
              WHERE cardinality(v_day_idx) > 0) u ON u.day BETWEEN d.from_day AND d.to_day
        UNION ALL
        -- whole hours
        SELECT h.idx, u.requests, u.successful, u.failed, u.cached, u.files, u.bytes, u.tokens_in, u.tokens_out, u.cost_usd, u.potential_cost_usd, u.quantity, u.latency_count, u.latency_sum, u.latency_max, u.latency_hist[1] AS h0, u.latency_hist[2] AS h1, u.latency_hist[3] AS h2, u.latency_hist[4] AS h3, u.latency_hist[5] AS h4, u.latency_hist[6] AS h5, u.latency_hist[7] AS h6, u.latency_hist[8] AS h7, u.latency_hist[9] AS h8, u.latency_hist[10] AS h9, u.latency_hist[11] AS h10, u.latency_hist[12] AS h11, u.latency_hist[13] AS h12, u.latency_hist[14] AS h13, u.latency_hist[15] AS h14, u.latency_hist[16] AS h15, u.latency_hist[17] AS h16, u.latency_hist[18] AS h17, u.latency_hist[19] AS h18, u.latency_hist[20] AS h19, u.latency_hist[21] AS h20, u.latency_hist[22] AS h21, u.latency_hist[23] AS h22, u.latency_hist[24] AS h23, u.latency_hist[25] AS h24, u.latency_hist[26] AS h25, u.latency_hist[27] AS h26, u.latency_hist[28] AS h27, u.latency_hist[29] AS h28, u.latency_hist[30] AS h29, u.latency_hist[31] AS h30, u.latency_hist[32] AS h31, u.latency_hist[33] AS h32, u.latency_hist[34] AS h33, u.latency_hist[35] AS h34, u.latency_hist[36] AS h35, u.latency_hist[37] AS h36, u.latency_hist[38] AS h37, u.latency_hist[39] AS h38, u.latency_hist[40] AS h39, u.latency_hist[41] AS h40, u.latency_hist[42] AS h41, u.unpriced
        FROM unnest(v_hour_idx, v_hour_lo, v_hour_hi) AS h(idx, lo, hi)
        JOIN (SELECT r.hour, r.requests, r.successful, r.failed, r.cached, r.files, r.bytes, r.tokens_in, r.tokens_out, r.cost_usd, r.potential_cost_usd, r.quantity, r.latency_count, r.latency_sum, r.latency_max, r.latency_hist, r.unpriced
              FROM tally._usage_by(p_account_id, 'hour', v_hour_lo, v_hour_hi, NULL, NULL, NULL,
                                   p_api_key_ids, p_event_types, p_providers, p_models, p_endpoints, p_file_types) r
              WHERE cardinality(v_hour_idx) > 0) u ON u.hour >= h.lo AND u.hour < h.hi
        UNION ALL
        -- the pieces of hours, from the raw events (folded or not)
        SELECT r.idx, count(*), count(*) FILTER (WHERE e.success), count(*) FILTER (WHERE NOT e.success), count(*) FILTER (WHERE e.cached), coalesce(sum(e.files), 0), coalesce(sum(e.bytes), 0), coalesce(sum(e.tokens_in), 0), coalesce(sum(e.tokens_out), 0), coalesce(sum(e.cost_usd), 0), coalesce(sum(e.potential_cost_usd), 0), sum(e.quantity), count(e.latency_ms), coalesce(sum(e.latency_ms), 0), max(e.latency_ms), count(*) FILTER (WHERE (e.latency_ms) < 1), count(*) FILTER (WHERE (e.latency_ms) >= 1 AND (e.latency_ms) < 2), count(*) FILTER (WHERE (e.latency_ms) >= 2 AND (e.latency_ms) < 3), count(*) FILTER (WHERE (e.latency_ms) >= 3 AND (e.latency_ms) < 4), count(*) FILTER (WHERE (e.latency_ms) >= 4 AND (e.latency_ms) < 6), count(*) FILTER (WHERE (e.latency_ms) >= 6 AND (e.latency_ms) < 8), count(*) FILTER (WHERE (e.latency_ms) >= 8 AND (e.latency_ms) < 11), count(*) FILTER (WHERE (e.latency_ms) >= 11 AND (e.latency_ms) < 16), count(*) FILTER (WHERE (e.latency_ms) >= 16 AND (e.latency_ms) < 23), count(*) FILTER (WHERE (e.latency_ms) >= 23 AND (e.latency_ms) < 32), count(*) FILTER (WHERE (e.latency_ms) >= 32 AND (e.latency_ms) < 45), count(*) FILTER (WHERE (e.latency_ms) >= 45 AND (e.latency_ms) < 64), count(*) FILTER (WHERE (e.latency_ms) >= 64 AND (e.latency_ms) < 91), count(*) FILTER (WHERE (e.latency_ms) >= 91 AND (e.latency_ms) < 128), count(*) FILTER (WHERE (e.latency_ms) >= 128 AND (e.latency_ms) < 181), count(*) FILTER (WHERE (e.latency_ms) >= 181 AND (e.latency_ms) < 256), count(*) FILTER (WHERE (e.latency_ms) >= 256 AND (e.latency_ms) < 362), count(*) FILTER (WHERE (e.latency_ms) >= 362 AND (e.latency_ms) < 512), count(*) FILTER (WHERE (e.latency_ms) >= 512 AND (e.latency_ms) < 724), count(*) FILTER (WHERE (e.latency_ms) >= 724 AND (e.latency_ms) < 1024), count(*) FILTER (WHERE (e.latency_ms) >= 1024 AND (e.latency_ms) < 1448), count(*) FILTER (WHERE (e.latency_ms) >= 1448 AND (e.latency_ms) < 2048), count(*) FILTER (WHERE (e.latency_ms) >= 2048 AND (e.latency_ms) < 2896), count(*) FILTER (WHERE (e.latency_ms) >= 2896 AND (e.latency_ms) < 4096), count(*) FILTER (WHERE (e.latency_ms) >= 4096 AND (e.latency_ms) < 5793), count(*) FILTER (WHERE (e.latency_ms) >= 5793 AND (e.latency_ms) < 8192), count(*) FILTER (WHERE (e.latency_ms) >= 8192 AND (e.latency_ms) < 11585), count(*) FILTER (WHERE (e.latency_ms) >= 11585 AND (e.latency_ms) < 16384), count(*) FILTER (WHERE (e.latency_ms) >= 16384 AND (e.latency_ms) < 23170), count(*) FILTER (WHERE (e.latency_ms) >= 23170 AND (e.latency_ms) < 32768), count(*) FILTER (WHERE (e.latency_ms) >= 32768 AND (e.latency_ms) < 46341), count(*) FILTER (WHERE (e.latency_ms) >= 46341 AND (e.latency_ms) < 65536), count(*) FILTER (WHERE (e.latency_ms) >= 65536 AND (e.latency_ms) < 92682), count(*) FILTER (WHERE (e.latency_ms) >= 92682 AND (e.latency_ms) < 131072), count(*) FILTER (WHERE (e.latency_ms) >= 131072 AND (e.latency_ms) < 185364), count(*) FILTER (WHERE (e.latency_ms) >= 185364 AND (e.latency_ms) < 262144), count(*) FILTER (WHERE (e.latency_ms) >= 262144 AND (e.latency_ms) < 370728), count(*) FILTER (WHERE (e.latency_ms) >= 370728 AND (e.latency_ms) < 524288), count(*) FILTER (WHERE (e.latency_ms) >= 524288 AND (e.latency_ms) < 741455), count(*) FILTER (WHERE (e.latency_ms) >= 741455 AND (e.latency_ms) < 1048576), count(*) FILTER (WHERE (e.latency_ms) >= 1048576 AND (e.latency_ms) < 1482910), count(*) FILTER (WHERE (e.latency_ms) >= 1482910), count(*) FILTER (WHERE (e.tokens_in IS NOT NULL OR e.tokens_out IS NOT NULL) AND (e.cost_usd IS NULL OR e.potential_cost_usd IS NULL))
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
      ) x(idx, requests, successful, failed, cached, files, bytes, tokens_in, tokens_out, cost_usd, potential_cost_usd, quantity, latency_count, latency_sum, latency_max, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23, h24, h25, h26, h27, h28, h29, h30, h31, h32, h33, h34, h35, h36, h37, h38, h39, h40, h41, unpriced)
      GROUP BY x.idx
    ) y;
END
$$;

--
-- Name: FUNCTION _usage_between(p_account_id uuid, p_lo timestamp with time zone[], p_hi timestamp with time zone[], p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._usage_between(p_account_id uuid, p_lo timestamp with time zone[], p_hi timestamp with time zone[], p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) IS 'The usage of one account in exact instant ranges [p_lo[i], p_hi[i]), one row per range with events (idx = i), as raw sums: whole local days from the daily aggregates, the remaining whole UTC hours from the hourly ones (their totals when nothing is filtered), both with the tail, and the pieces of hours at the edges from the raw events. The statement is written into the function from tally._usage_sql_parts() (planned once per session). Callers check access and arguments first.';

--
-- Name: _usage_by(uuid, text, timestamp with time zone[], timestamp with time zone[], date, date, text[], uuid[], text[], text[], text[], text[], text[], date); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._usage_by(p_account_id uuid, p_unit text, p_hours_lo timestamp with time zone[], p_hours_hi timestamp with time zone[], p_from_day date, p_to_day date, p_groups text[], p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[], p_split date DEFAULT NULL::date) RETURNS TABLE(hour timestamp with time zone, day date, dim text, grp text, requests bigint, successful bigint, failed bigint, cached bigint, files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, cost_usd numeric, potential_cost_usd numeric, quantity numeric, unpriced bigint, latency_count bigint, latency_sum numeric, latency_max integer, latency_hist bigint[])
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    SET jit TO 'off'
    SET "DateStyle" TO 'ISO'
    AS $_$
DECLARE
  v_parts     record := tally._usage_sql_parts();
  v_slots     record := tally._usage_tail_sql_parts();
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
    -- with no filter and no grouping, one row per hour: the totals
    v_stored_from := format('unnest($3, $4) AS r(lo, hi) JOIN tally.%I u ON u.account_id = $1 AND u.bucket >= r.lo AND u.bucket < r.hi',
                            CASE WHEN v_nfilters = 0 AND p_groups IS NULL THEN 'usage_hourly_totals' ELSE 'usage_hourly' END);
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
        SELECT t.b1, t.b2, t.g1, t.g2, %7$s
        FROM (
          -- the events by bucket, value and latency slot: the 42 slot counts then run over
          -- these groups instead of over every event
          SELECT %1$s, %2$s, %8$s, %3$s
          FROM %4$s
          WHERE e.account_id = $1 AND e.id > %5$s AND %6$s
            AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
          GROUP BY 1, 2, 3, 4, %8$s
        ) t(b1, b2, g1, g2, %9$s)
        GROUP BY 1, 2, 3, 4$t$,
      v_tail_bucket, v_tail_grp, v_slots.first, v_tail_from, v_watermark, v_tail_where,
      v_slots.second, v_slots.slots, v_slots.first_columns);
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
$_$;

--
-- Name: FUNCTION _usage_by(p_account_id uuid, p_unit text, p_hours_lo timestamp with time zone[], p_hours_hi timestamp with time zone[], p_from_day date, p_to_day date, p_groups text[], p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[], p_split date); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._usage_by(p_account_id uuid, p_unit text, p_hours_lo timestamp with time zone[], p_hours_hi timestamp with time zone[], p_from_day date, p_to_day date, p_groups text[], p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[], p_split date) IS 'The usage of one account as raw sums (and a 42-slot latency histogram) per bucket and, if p_groups names dimensions, per dimension and value: the stored aggregates plus the unfolded tail. p_unit hour: the UTC hours in the ranges [p_hours_lo[i], p_hours_hi[i]); day, week (ISO, by its Monday), none (one row for the range; with p_split, two: day p_from_day for the days before p_split, day p_split for the rest): local days p_from_day..p_to_day; month: local months starting p_from_day..p_to_day. Filters are ANDed lists (NULL: none). Reads the hourly totals for hours with no filter and no grouping, the rows by dimension when they can answer, else the rows per tuple. Callers check access and arguments first.';

--
-- Name: _usage_metrics_sql(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._usage_metrics_sql(p_alias text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    AS $_$
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
  $_$;

--
-- Name: FUNCTION _usage_metrics_sql(p_alias text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._usage_metrics_sql(p_alias text) IS 'The metric columns of the dashboard functions (requests .. p99_latency_ms), as SQL over the raw sums of the given alias r (a row of tally._usage_by) and its percentiles r_pct (CROSS JOIN LATERAL tally._latency_percentiles(r.latency_hist, r.latency_max) AS r_pct).';

--
-- Name: _usage_sql_parts(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._usage_sql_parts(OUT stored text, OUT tail text, OUT outer_sums text, OUT columns text) RETURNS record
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    AS $$ select 'u.requests, u.successful, u.failed, u.cached, u.files, u.bytes, u.tokens_in, u.tokens_out, u.cost_usd, u.potential_cost_usd, u.quantity, u.latency_count, u.latency_sum, u.latency_max, u.latency_hist[1] AS h0, u.latency_hist[2] AS h1, u.latency_hist[3] AS h2, u.latency_hist[4] AS h3, u.latency_hist[5] AS h4, u.latency_hist[6] AS h5, u.latency_hist[7] AS h6, u.latency_hist[8] AS h7, u.latency_hist[9] AS h8, u.latency_hist[10] AS h9, u.latency_hist[11] AS h10, u.latency_hist[12] AS h11, u.latency_hist[13] AS h12, u.latency_hist[14] AS h13, u.latency_hist[15] AS h14, u.latency_hist[16] AS h15, u.latency_hist[17] AS h16, u.latency_hist[18] AS h17, u.latency_hist[19] AS h18, u.latency_hist[20] AS h19, u.latency_hist[21] AS h20, u.latency_hist[22] AS h21, u.latency_hist[23] AS h22, u.latency_hist[24] AS h23, u.latency_hist[25] AS h24, u.latency_hist[26] AS h25, u.latency_hist[27] AS h26, u.latency_hist[28] AS h27, u.latency_hist[29] AS h28, u.latency_hist[30] AS h29, u.latency_hist[31] AS h30, u.latency_hist[32] AS h31, u.latency_hist[33] AS h32, u.latency_hist[34] AS h33, u.latency_hist[35] AS h34, u.latency_hist[36] AS h35, u.latency_hist[37] AS h36, u.latency_hist[38] AS h37, u.latency_hist[39] AS h38, u.latency_hist[40] AS h39, u.latency_hist[41] AS h40, u.latency_hist[42] AS h41, u.unpriced'::text, 'count(*), count(*) FILTER (WHERE e.success), count(*) FILTER (WHERE NOT e.success), count(*) FILTER (WHERE e.cached), coalesce(sum(e.files), 0), coalesce(sum(e.bytes), 0), coalesce(sum(e.tokens_in), 0), coalesce(sum(e.tokens_out), 0), coalesce(sum(e.cost_usd), 0), coalesce(sum(e.potential_cost_usd), 0), sum(e.quantity), count(e.latency_ms), coalesce(sum(e.latency_ms), 0), max(e.latency_ms), count(*) FILTER (WHERE (e.latency_ms) < 1), count(*) FILTER (WHERE (e.latency_ms) >= 1 AND (e.latency_ms) < 2), count(*) FILTER (WHERE (e.latency_ms) >= 2 AND (e.latency_ms) < 3), count(*) FILTER (WHERE (e.latency_ms) >= 3 AND (e.latency_ms) < 4), count(*) FILTER (WHERE (e.latency_ms) >= 4 AND (e.latency_ms) < 6), count(*) FILTER (WHERE (e.latency_ms) >= 6 AND (e.latency_ms) < 8), count(*) FILTER (WHERE (e.latency_ms) >= 8 AND (e.latency_ms) < 11), count(*) FILTER (WHERE (e.latency_ms) >= 11 AND (e.latency_ms) < 16), count(*) FILTER (WHERE (e.latency_ms) >= 16 AND (e.latency_ms) < 23), count(*) FILTER (WHERE (e.latency_ms) >= 23 AND (e.latency_ms) < 32), count(*) FILTER (WHERE (e.latency_ms) >= 32 AND (e.latency_ms) < 45), count(*) FILTER (WHERE (e.latency_ms) >= 45 AND (e.latency_ms) < 64), count(*) FILTER (WHERE (e.latency_ms) >= 64 AND (e.latency_ms) < 91), count(*) FILTER (WHERE (e.latency_ms) >= 91 AND (e.latency_ms) < 128), count(*) FILTER (WHERE (e.latency_ms) >= 128 AND (e.latency_ms) < 181), count(*) FILTER (WHERE (e.latency_ms) >= 181 AND (e.latency_ms) < 256), count(*) FILTER (WHERE (e.latency_ms) >= 256 AND (e.latency_ms) < 362), count(*) FILTER (WHERE (e.latency_ms) >= 362 AND (e.latency_ms) < 512), count(*) FILTER (WHERE (e.latency_ms) >= 512 AND (e.latency_ms) < 724), count(*) FILTER (WHERE (e.latency_ms) >= 724 AND (e.latency_ms) < 1024), count(*) FILTER (WHERE (e.latency_ms) >= 1024 AND (e.latency_ms) < 1448), count(*) FILTER (WHERE (e.latency_ms) >= 1448 AND (e.latency_ms) < 2048), count(*) FILTER (WHERE (e.latency_ms) >= 2048 AND (e.latency_ms) < 2896), count(*) FILTER (WHERE (e.latency_ms) >= 2896 AND (e.latency_ms) < 4096), count(*) FILTER (WHERE (e.latency_ms) >= 4096 AND (e.latency_ms) < 5793), count(*) FILTER (WHERE (e.latency_ms) >= 5793 AND (e.latency_ms) < 8192), count(*) FILTER (WHERE (e.latency_ms) >= 8192 AND (e.latency_ms) < 11585), count(*) FILTER (WHERE (e.latency_ms) >= 11585 AND (e.latency_ms) < 16384), count(*) FILTER (WHERE (e.latency_ms) >= 16384 AND (e.latency_ms) < 23170), count(*) FILTER (WHERE (e.latency_ms) >= 23170 AND (e.latency_ms) < 32768), count(*) FILTER (WHERE (e.latency_ms) >= 32768 AND (e.latency_ms) < 46341), count(*) FILTER (WHERE (e.latency_ms) >= 46341 AND (e.latency_ms) < 65536), count(*) FILTER (WHERE (e.latency_ms) >= 65536 AND (e.latency_ms) < 92682), count(*) FILTER (WHERE (e.latency_ms) >= 92682 AND (e.latency_ms) < 131072), count(*) FILTER (WHERE (e.latency_ms) >= 131072 AND (e.latency_ms) < 185364), count(*) FILTER (WHERE (e.latency_ms) >= 185364 AND (e.latency_ms) < 262144), count(*) FILTER (WHERE (e.latency_ms) >= 262144 AND (e.latency_ms) < 370728), count(*) FILTER (WHERE (e.latency_ms) >= 370728 AND (e.latency_ms) < 524288), count(*) FILTER (WHERE (e.latency_ms) >= 524288 AND (e.latency_ms) < 741455), count(*) FILTER (WHERE (e.latency_ms) >= 741455 AND (e.latency_ms) < 1048576), count(*) FILTER (WHERE (e.latency_ms) >= 1048576 AND (e.latency_ms) < 1482910), count(*) FILTER (WHERE (e.latency_ms) >= 1482910), count(*) FILTER (WHERE (e.tokens_in IS NOT NULL OR e.tokens_out IS NOT NULL) AND (e.cost_usd IS NULL OR e.potential_cost_usd IS NULL))'::text, 'coalesce(sum(x.requests), 0)::bigint AS requests, coalesce(sum(x.successful), 0)::bigint AS successful, coalesce(sum(x.failed), 0)::bigint AS failed, coalesce(sum(x.cached), 0)::bigint AS cached, coalesce(sum(x.files), 0)::numeric AS files, coalesce(sum(x.bytes), 0)::numeric AS bytes, coalesce(sum(x.tokens_in), 0)::numeric AS tokens_in, coalesce(sum(x.tokens_out), 0)::numeric AS tokens_out, coalesce(sum(x.cost_usd), 0)::numeric AS cost_usd, coalesce(sum(x.potential_cost_usd), 0)::numeric AS potential_cost_usd, coalesce(sum(x.quantity), 0)::numeric AS quantity, coalesce(sum(x.latency_count), 0)::bigint AS latency_count, coalesce(sum(x.latency_sum), 0)::numeric AS latency_sum, max(x.latency_max) AS latency_max, ARRAY[coalesce(sum(x.h0), 0)::bigint, coalesce(sum(x.h1), 0)::bigint, coalesce(sum(x.h2), 0)::bigint, coalesce(sum(x.h3), 0)::bigint, coalesce(sum(x.h4), 0)::bigint, coalesce(sum(x.h5), 0)::bigint, coalesce(sum(x.h6), 0)::bigint, coalesce(sum(x.h7), 0)::bigint, coalesce(sum(x.h8), 0)::bigint, coalesce(sum(x.h9), 0)::bigint, coalesce(sum(x.h10), 0)::bigint, coalesce(sum(x.h11), 0)::bigint, coalesce(sum(x.h12), 0)::bigint, coalesce(sum(x.h13), 0)::bigint, coalesce(sum(x.h14), 0)::bigint, coalesce(sum(x.h15), 0)::bigint, coalesce(sum(x.h16), 0)::bigint, coalesce(sum(x.h17), 0)::bigint, coalesce(sum(x.h18), 0)::bigint, coalesce(sum(x.h19), 0)::bigint, coalesce(sum(x.h20), 0)::bigint, coalesce(sum(x.h21), 0)::bigint, coalesce(sum(x.h22), 0)::bigint, coalesce(sum(x.h23), 0)::bigint, coalesce(sum(x.h24), 0)::bigint, coalesce(sum(x.h25), 0)::bigint, coalesce(sum(x.h26), 0)::bigint, coalesce(sum(x.h27), 0)::bigint, coalesce(sum(x.h28), 0)::bigint, coalesce(sum(x.h29), 0)::bigint, coalesce(sum(x.h30), 0)::bigint, coalesce(sum(x.h31), 0)::bigint, coalesce(sum(x.h32), 0)::bigint, coalesce(sum(x.h33), 0)::bigint, coalesce(sum(x.h34), 0)::bigint, coalesce(sum(x.h35), 0)::bigint, coalesce(sum(x.h36), 0)::bigint, coalesce(sum(x.h37), 0)::bigint, coalesce(sum(x.h38), 0)::bigint, coalesce(sum(x.h39), 0)::bigint, coalesce(sum(x.h40), 0)::bigint, coalesce(sum(x.h41), 0)::bigint] AS latency_hist, coalesce(sum(x.unpriced), 0)::bigint AS unpriced'::text, 'requests, successful, failed, cached, files, bytes, tokens_in, tokens_out, cost_usd, potential_cost_usd, quantity, latency_count, latency_sum, latency_max, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23, h24, h25, h26, h27, h28, h29, h30, h31, h32, h33, h34, h35, h36, h37, h38, h39, h40, h41, unpriced'::text $$;

--
-- Name: FUNCTION _usage_sql_parts(OUT stored text, OUT tail text, OUT outer_sums text, OUT columns text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._usage_sql_parts(OUT stored text, OUT tail text, OUT outer_sums text, OUT columns text) IS 'The constant SQL pieces of tally._usage_by, generated from tally._rollup_metrics() when this migration ran: stored (a rollup row u as columns, histogram slots h0..h41), tail (the same of a group of events e), outer_sums (the sums of both as the metric columns) and columns (their names). A migration that changes the metric list recreates it.';

--
-- Name: _usage_tail_sql_parts(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally._usage_tail_sql_parts(OUT slots text, OUT first text, OUT first_columns text, OUT second text) RETURNS record
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ select 'width_bucket(e.latency_ms, tally.latency_buckets())'::text, 'count(*), count(*) FILTER (WHERE e.success), count(*) FILTER (WHERE NOT e.success), count(*) FILTER (WHERE e.cached), coalesce(sum(e.files), 0), coalesce(sum(e.bytes), 0), coalesce(sum(e.tokens_in), 0), coalesce(sum(e.tokens_out), 0), coalesce(sum(e.cost_usd), 0), coalesce(sum(e.potential_cost_usd), 0), sum(e.quantity), count(e.latency_ms), coalesce(sum(e.latency_ms), 0), max(e.latency_ms), count(e.latency_ms), count(*) FILTER (WHERE (e.tokens_in IS NOT NULL OR e.tokens_out IS NOT NULL) AND (e.cost_usd IS NULL OR e.potential_cost_usd IS NULL))'::text, 'latency_hist_slot, requests, successful, failed, cached, files, bytes, tokens_in, tokens_out, cost_usd, potential_cost_usd, quantity, latency_count, latency_sum, latency_max, latency_hist_n, unpriced'::text, 'tally._sum8(t.requests), tally._sum8(t.successful), tally._sum8(t.failed), tally._sum8(t.cached), sum(t.files), sum(t.bytes), sum(t.tokens_in), sum(t.tokens_out), sum(t.cost_usd), sum(t.potential_cost_usd), sum(t.quantity), tally._sum8(t.latency_count), sum(t.latency_sum), max(t.latency_max), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 0), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 1), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 2), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 3), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 4), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 5), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 6), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 7), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 8), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 9), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 10), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 11), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 12), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 13), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 14), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 15), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 16), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 17), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 18), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 19), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 20), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 21), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 22), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 23), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 24), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 25), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 26), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 27), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 28), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 29), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 30), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 31), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 32), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 33), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 34), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 35), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 36), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 37), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 38), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 39), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 40), tally._sum8(t.latency_hist_n) FILTER (WHERE t.latency_hist_slot = 41), tally._sum8(t.unpriced)'::text $$;

--
-- Name: FUNCTION _usage_tail_sql_parts(OUT slots text, OUT first text, OUT first_columns text, OUT second text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally._usage_tail_sql_parts(OUT slots text, OUT first text, OUT first_columns text, OUT second text) IS 'The constant SQL pieces of tally._usage_by''s tail, generated from tally._rollup_metrics() when migration 41 ran: slots (each histogram''s width_bucket slot of an event e, also what the first grouping groups by), first (each metric of a group of events of one slot: histograms as the count in it), first_columns (the names of slots and first) and second (the metrics of groups t of those rows, histograms as 42 slot columns, as tally._usage_sql_parts().tail gives them). A migration that changes the metric list recreates it.';

--
-- Name: apply_retention(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.apply_retention() RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET lock_timeout TO '10s'
    SET "TimeZone" TO 'UTC'
    AS $_$
DECLARE
  v_cutoff    timestamptz := tally._retention_floor('events');
  v_watermark bigint;
  v_part      record;
  v_dropped   text[] := '{}';
  v_kept      text[] := '{}';
  v_voids     bigint := 0;
  v_n         bigint;
  v_unfolded  boolean;
  v_hourly    bigint;
  v_daily     bigint;
  v_rejected  bigint;
BEGIN
  PERFORM tally._require_read_committed('apply_retention');
  -- no rollup runs meanwhile: a partition is dropped only once all of it is folded
  PERFORM pg_advisory_xact_lock(hashtext('tally.run_rollups'));
  v_watermark := (SELECT s.watermark FROM tally.rollup_state s);

  FOR v_part IN
    -- monthly partitions lying wholly before the cutoff (their month ends by then)
    SELECT c.relname, to_timestamp(substring(c.relname FROM 'events_p([0-9]{4}_[0-9]{2})'), 'YYYY_MM') AS month_start
    FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'tally.events'::regclass AND c.relname ~ '^events_p[0-9]{4}_[0-9]{2}$'
    ORDER BY 2
  LOOP
    CONTINUE WHEN v_part.month_start + interval '1 month' > v_cutoff;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM tally.%I WHERE id > $1)', v_part.relname) INTO STRICT v_unfolded USING v_watermark;
    IF v_unfolded THEN
      -- events not folded yet: keep them until the rollups have counted them
      v_kept := v_kept || v_part.relname::text;
      CONTINUE;
    END IF;
    DELETE FROM tally.event_voids v
    WHERE v.occurred_at >= v_part.month_start AND v.occurred_at < v_part.month_start + interval '1 month';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_voids := v_voids + v_n;
    EXECUTE format('DROP TABLE tally.%I', v_part.relname);
    v_dropped := v_dropped || v_part.relname::text;
  END LOOP;

  DELETE FROM tally.usage_hourly u WHERE u.bucket < tally._retention_floor('hourly');
  GET DIAGNOSTICS v_hourly = ROW_COUNT;
  DELETE FROM tally.usage_hourly_totals u WHERE u.bucket < tally._retention_floor('hourly');
  DELETE FROM tally.usage_daily u WHERE u.bucket < tally._retention_floor('daily')::date;
  GET DIAGNOSTICS v_daily = ROW_COUNT;
  DELETE FROM tally.usage_daily_by_dimension u WHERE u.bucket < tally._retention_floor('daily')::date;
  DELETE FROM tally.rejected_events r WHERE r.received_at < tally._retention_floor('rejected_events');
  GET DIAGNOSTICS v_rejected = ROW_COUNT;

  RETURN jsonb_build_object(
    'dropped_partitions', to_jsonb(v_dropped), 'kept_unfolded_partitions', to_jsonb(v_kept), 'voids_deleted', v_voids,
    'hourly_deleted', v_hourly, 'daily_deleted', v_daily, 'rejected_deleted', v_rejected, 'events_cutoff', v_cutoff);
END
$_$;

--
-- Name: FUNCTION apply_retention(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.apply_retention() IS 'Applies the retention.* settings: drops the monthly events partitions that lie wholly before retention.events (never one holding events the rollups have not folded; it is kept and reported), with their voids; deletes hourly rows (hourly totals with them), daily rows (daily rows by dimension with them) and rejected items past their retention. Monthly rows are kept. Run daily by the worker. Returns what it removed (hourly_deleted counts usage_hourly rows, daily_deleted usage_daily rows). Service callers only.';

--
-- Name: attach_meter(regclass, text, jsonb); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.attach_meter(p_table regclass, p_event_type text, p_mapping jsonb) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET jit TO 'off'
    AS $_$
DECLARE
  c_fields constant text[] := '{account_id,api_key_id,occurred_at,provider,model,endpoint,method,status_code,success,error_message,file_type,files,bytes,tokens_in,tokens_out,cached,cost_usd,potential_cost_usd,latency_ms,quantity,idempotency_key,properties}';
  v_kind   "char";
  v_schema text;
  v_name   text;
  v_field  text;
  v_source jsonb;
  v_type   regtype;
  v_exprs  text[] := '{}';
  v_sql    text;
  v_problem text;
BEGIN
  IF NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', '42501', 'attach_meter: service callers only');
  END IF;
  IF p_table IS NULL THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'table: is required');
  END IF;
  SELECT c.relkind, n.nspname, c.relname INTO v_kind, v_schema, v_name
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid = p_table;
  IF v_kind NOT IN ('r', 'p') THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('table: %s is not a table', p_table));
  END IF;
  IF v_schema = 'tally' THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('table: %s belongs to Tally and cannot be metered', p_table));
  END IF;
  IF v_schema IN ('pg_catalog', 'information_schema') OR v_schema LIKE 'pg\_%' THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('table: %s is a system table', p_table));
  END IF;
  -- The meter copies column values into events that the tenant's members can read, so the
  -- caller must be allowed to read those columns and to put a trigger on the table.
  IF NOT has_table_privilege(tally._caller_role(), p_table, 'TRIGGER') THEN
    PERFORM tally._raise('forbidden', '42501', format('table: %s needs the TRIGGER privilege on %s', tally._caller_role(), p_table));
  END IF;
  IF p_event_type IS NULL OR p_event_type !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$' THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('event_type: must be a slug of at most 64 characters (got %L)', p_event_type));
  END IF;
  IF p_mapping IS NULL OR jsonb_typeof(p_mapping) <> 'object' THEN
    PERFORM tally._raise('invalid_mapping', '22023', 'mapping: must be a JSON object of event field -> column name or {"value": constant}');
  END IF;
  IF NOT (p_mapping ? 'account_id' OR p_mapping ? 'api_key_id') THEN
    PERFORM tally._raise('invalid_mapping', '22023', 'mapping: must map account_id or api_key_id (the tenant of each row)');
  END IF;

  FOR v_field, v_source IN SELECT key, value FROM jsonb_each(p_mapping) ORDER BY key LOOP
    IF v_field = 'event_type' THEN
      PERFORM tally._raise('invalid_mapping', '22023', 'mapping.event_type: the event type is the p_event_type argument, not a mapping');
    ELSIF NOT v_field = ANY (c_fields) THEN
      PERFORM tally._raise('invalid_mapping', '22023', format('mapping.%s: not an event field (known: %s)', v_field, array_to_string(c_fields, ', ')));
    END IF;

    IF jsonb_typeof(v_source) = 'string' THEN
      -- a column of the table, of a type that fits the field
      SELECT a.atttypid::regtype INTO v_type
      FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = p_table AND a.attname = v_source #>> '{}' AND a.attnum > 0 AND NOT a.attisdropped;
      IF NOT FOUND THEN
        PERFORM tally._raise('invalid_mapping', '22023', format('mapping.%s: %s has no column %I', v_field, p_table, v_source #>> '{}'));
      END IF;
      IF NOT has_column_privilege(tally._caller_role(), p_table, v_source #>> '{}', 'SELECT') THEN
        PERFORM tally._raise('forbidden', '42501',
          format('mapping.%s: %s may not read column %I of %s', v_field, tally._caller_role(), v_source #>> '{}', p_table));
      END IF;
      IF NOT tally._meter_field_accepts(v_field, v_type) THEN
        PERFORM tally._raise('invalid_mapping', '22023',
          format('mapping.%s: column %I is %s, which cannot feed %s', v_field, v_source #>> '{}', v_type, v_field));
      END IF;
      -- long strings are cut just past their limit: still refused (too_long) or truncated
      -- (error_message) by the validator, without carrying megabytes into the JSON array
      v_exprs := v_exprs || CASE
        WHEN v_type NOT IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype, 'name'::regtype)
          THEN format('%L, n.%I', v_field, v_source #>> '{}')
        WHEN v_field IN ('provider', 'model') THEN format('%L, left(n.%I, 201)', v_field, v_source #>> '{}')
        WHEN v_field IN ('endpoint') THEN format('%L, left(n.%I, 2001)', v_field, v_source #>> '{}')
        WHEN v_field IN ('method', 'file_type', 'idempotency_key', 'account_id', 'api_key_id') THEN format('%L, left(n.%I, 300)', v_field, v_source #>> '{}')
        WHEN v_field = 'error_message' THEN format('%L, left(n.%I, 100001)', v_field, v_source #>> '{}')
        ELSE format('%L, n.%I', v_field, v_source #>> '{}')
      END;
    ELSIF jsonb_typeof(v_source) = 'object' AND v_source ? 'value' AND (SELECT count(*) FROM jsonb_object_keys(v_source)) = 1 THEN
      -- a constant, checked by the validator itself on a sample event
      v_exprs := v_exprs || format('%L, %L::jsonb', v_field, v_source -> 'value');
    ELSE
      PERFORM tally._raise('invalid_mapping', '22023',
        format('mapping.%s: must be a column name (string) or {"value": constant} (got %s)', v_field, v_source));
    END IF;
  END LOOP;

  -- Constants and the event type are the same for every row: one sample event made of them
  -- must pass the validator. A tenant taken from a column is stood in for by a random
  -- account, so only a constant tenant is checked for existence.
  SELECT p.code || ': ' || p.message INTO v_problem FROM tally._parse_events(jsonb_build_array(
      jsonb_build_object('event_type', p_event_type)
      || CASE WHEN jsonb_typeof(p_mapping -> 'account_id') = 'object' OR jsonb_typeof(p_mapping -> 'api_key_id') = 'object'
              THEN '{}'::jsonb ELSE jsonb_build_object('account_id', gen_random_uuid()) END
      || (SELECT coalesce(jsonb_object_agg(key, value -> 'value'), '{}') FROM jsonb_each(p_mapping)
          WHERE jsonb_typeof(value) = 'object'))) p
  WHERE p.code IS NOT NULL
    AND (p.code <> 'account_not_found' OR jsonb_typeof(p_mapping -> 'account_id') = 'object' OR jsonb_typeof(p_mapping -> 'api_key_id') = 'object');
  IF v_problem IS NOT NULL THEN
    PERFORM tally._raise('invalid_mapping', '22023', format('mapping: a constant is refused (%s)', v_problem));
  END IF;

  -- $1 is the event type, $2 the chunk size; one row per chunk, in insertion order
  v_sql := format(
    'SELECT (min(x.ord) - 1)::bigint AS first_index, jsonb_agg(x.event ORDER BY x.ord) AS events'
    ' FROM (SELECT row_number() OVER () AS ord, jsonb_build_object(%s) AS event FROM tally_new_rows n) x'
    ' GROUP BY (x.ord - 1) / $2 ORDER BY 1',
    array_to_string(ARRAY['''event_type'', $1'] || v_exprs, ', '));

  -- forget meters of tables dropped since (their regclass no longer resolves)
  DELETE FROM tally.meters m WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = m.table_id);

  INSERT INTO tally.meters AS m (table_id, table_name, event_type, mapping, select_sql)
  VALUES (p_table, format('%I.%I', v_schema, v_name), p_event_type, p_mapping, v_sql)
  ON CONFLICT (table_id) DO UPDATE
    SET table_name = excluded.table_name, event_type = excluded.event_type, mapping = excluded.mapping,
        select_sql = excluded.select_sql, created_at = now();

  IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = p_table AND t.tgname = 'tally_meter'
             AND t.tgfoid <> 'tally.tg_meter__insert()'::regprocedure) THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('table: %s already has a trigger named tally_meter that is not Tally''s', p_table));
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = p_table AND t.tgname = 'tally_meter') THEN
    EXECUTE format('DROP TRIGGER tally_meter ON %s', p_table);
  END IF;
  EXECUTE format(
    'CREATE TRIGGER tally_meter AFTER INSERT ON %s REFERENCING NEW TABLE AS tally_new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally.tg_meter__insert()',
    p_table);
  RETURN jsonb_build_object('table', format('%I.%I', v_schema, v_name), 'event_type', p_event_type, 'mapping', p_mapping);
END
$_$;

--
-- Name: FUNCTION attach_meter(p_table regclass, p_event_type text, p_mapping jsonb); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.attach_meter(p_table regclass, p_event_type text, p_mapping jsonb) IS 'Meters inserts into an app table: every row inserted through it becomes an event of type p_event_type, in the same transaction (rows inserted directly into one of its partitions are not metered). p_mapping maps event fields to the table''s columns ("bytes": "size_bytes") or constants ("provider": {"value": "s3"}); account_id or api_key_id is required. Checked now: unknown fields, missing columns, ill-typed columns and refused constants raise invalid_mapping (22023); the caller needs TRIGGER on the table and SELECT on the mapped columns (forbidden, 42501). Attaching again replaces the mapping. Service callers only.';

--
-- Name: compare_periods(uuid, text, timestamp with time zone, uuid[], text[], text[], text[], text[], text[]); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.compare_periods(p_account_id uuid, p_period text DEFAULT 'month'::text, p_at timestamp with time zone DEFAULT now(), p_api_key_ids uuid[] DEFAULT NULL::uuid[], p_event_types text[] DEFAULT NULL::text[], p_providers text[] DEFAULT NULL::text[], p_models text[] DEFAULT NULL::text[], p_endpoints text[] DEFAULT NULL::text[], p_file_types text[] DEFAULT NULL::text[]) RETURNS TABLE(metric text, current_value numeric, previous_value numeric, change numeric, change_pct numeric, current_from timestamp with time zone, current_to timestamp with time zone, previous_from timestamp with time zone, previous_to timestamp with time zone)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    SET jit TO 'off'
    AS $$
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

  RETURN QUERY
    WITH sums AS (
      SELECT i.idx, 
      coalesce(r.requests, 0)::bigint AS requests, coalesce(r.successful, 0)::bigint AS successful,
      coalesce(r.failed, 0)::bigint AS failed, coalesce(r.cached, 0)::bigint AS cached,
      CASE WHEN coalesce(r.requests, 0) > 0 THEN round(100.0 * r.cached / r.requests, 2) ELSE 0.00 END AS cache_hit_pct,
      coalesce(r.files, 0) AS files, coalesce(r.bytes, 0) AS bytes,
      coalesce(r.tokens_in, 0) AS tokens_in, coalesce(r.tokens_out, 0) AS tokens_out,
      coalesce(r.tokens_in, 0) + coalesce(r.tokens_out, 0) AS tokens_total,
      coalesce(r.cost_usd, 0) AS cost_usd, coalesce(r.potential_cost_usd, 0) AS potential_cost_usd,
      coalesce(r.potential_cost_usd, 0) - coalesce(r.cost_usd, 0) AS savings_usd,
      coalesce(r.quantity, 0) AS quantity, coalesce(r.unpriced, 0)::bigint AS unpriced,
      round(r.latency_sum / nullif(r.latency_count, 0), 2) AS avg_latency_ms,
      r_pct.p50 AS p50_latency_ms, r_pct.p95 AS p95_latency_ms, r_pct.p99 AS p99_latency_ms
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
$$;

--
-- Name: FUNCTION compare_periods(p_account_id uuid, p_period text, p_at timestamp with time zone, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.compare_periods(p_account_id uuid, p_period text, p_at timestamp with time zone, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) IS 'This period so far against the same span of the previous one, in the account''s calendar: current = [start of the local day, ISO week (Monday) or month holding p_at, p_at); previous = [start of the period before, that start + the same elapsed time), capped at the current start. One row per metric of get_usage_series (same names, same order): current_value, previous_value, change, change_pct (NULL when the previous value is 0 or NULL), with both ranges. Exact to the instant: whole local days from the daily rows, whole hours from the hourly rows (their totals when nothing is filtered), the pieces of hours from the raw events (the tail included). Filters as get_usage_series. Errors: invalid_parameter, past_retention (22023); forbidden (42501). Members of the account and service callers.';

--
-- Name: accounts; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.accounts (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    external_id text,
    timezone text DEFAULT 'UTC'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT accounts_external_id_check CHECK (((length(external_id) >= 1) AND (length(external_id) <= 200))),
    CONSTRAINT accounts_name_check CHECK (((length(name) >= 1) AND (length(name) <= 200))),
    CONSTRAINT accounts_timezone_check CHECK (tally._is_valid_timezone(timezone))
);

--
-- Name: TABLE accounts; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.accounts IS 'Billing tenants (a team, project or portal). external_id is an optional unique key from another system (a Stripe customer, a HubSpot portal); timezone (IANA) defines the account''s calendar days and months.';

--
-- Name: create_account(text, text, text, uuid); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.create_account(p_name text, p_external_id text DEFAULT NULL::text, p_timezone text DEFAULT 'UTC'::text, p_owner_id uuid DEFAULT NULL::uuid) RETURNS tally.accounts
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_owner   uuid := p_owner_id;
  v_account tally.accounts;
BEGIN
  IF NOT tally._caller_is_service() THEN
    -- A user creates accounts for themselves only.
    IF (select auth.uid()) IS NULL THEN
      PERFORM tally._raise('forbidden', 'create_account needs a signed-in user or a service caller');
    END IF;
    IF v_owner IS NOT NULL AND v_owner <> (select auth.uid()) THEN
      PERFORM tally._raise('forbidden', 'owner_id: a user can only create accounts they own');
    END IF;
    IF p_external_id IS NOT NULL THEN
      PERFORM tally._raise('forbidden', 'external_id: only a service caller sets external_id');
    END IF;
    v_owner := (select auth.uid());
  END IF;
  IF p_name IS NULL THEN
    PERFORM tally._raise('invalid_parameter', 'name: must be 1 to 200 characters');
  END IF;
  IF p_timezone IS NULL THEN
    PERFORM tally._raise('invalid_timezone', 'timezone: must be an IANA time zone name');
  END IF;
  PERFORM tally._check_account_fields(p_name, p_external_id, p_timezone);
  IF v_owner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM auth.users WHERE id = v_owner) THEN
    PERFORM tally._raise('user_not_found', format('owner_id: user %s does not exist', v_owner));
  END IF;

  BEGIN
    INSERT INTO tally.accounts (name, external_id, timezone)
    VALUES (btrim(p_name), p_external_id, p_timezone)
    RETURNING * INTO v_account;
  EXCEPTION WHEN unique_violation THEN
    PERFORM tally._raise('duplicate_external_id', format('external_id: an account with %L already exists', p_external_id));
  END;
  IF v_owner IS NOT NULL THEN
    INSERT INTO tally.account_members (account_id, user_id, role) VALUES (v_account.id, v_owner, 'owner');
  END IF;
  RETURN v_account;
END
$$;

--
-- Name: FUNCTION create_account(p_name text, p_external_id text, p_timezone text, p_owner_id uuid); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.create_account(p_name text, p_external_id text, p_timezone text, p_owner_id uuid) IS 'Creates an account and makes its owner a member with role owner. A signed-in user always owns what they create and cannot set external_id; a service caller may name any owner or none, and an external_id. Errors: invalid_parameter / invalid_timezone (22023), duplicate_external_id (23505), user_not_found (P0002), forbidden (42501).';

--
-- Name: create_api_key(uuid, text, timestamp with time zone); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.create_api_key(p_account_id uuid, p_name text, p_expires_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(id uuid, account_id uuid, name text, prefix text, secret text, expires_at timestamp with time zone)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_secret text;
  v_hash   bytea;
  v_id     uuid;
BEGIN
  PERFORM tally._require_account_role(p_account_id, 'admin');
  IF p_name IS NULL OR length(btrim(p_name)) NOT BETWEEN 1 AND 200 THEN
    PERFORM tally._raise('invalid_parameter', 'name: must be 1 to 200 characters');
  END IF;
  IF p_expires_at IS NOT NULL AND p_expires_at <= now() THEN
    PERFORM tally._raise('invalid_parameter', 'expires_at: must be in the future');
  END IF;

  -- 'tk_' + 40 url-safe base64 characters of two random UUIDs (240 random bits).
  LOOP
    v_secret := 'tk_' || left(translate(encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'base64'), '+/=', '-_'), 40);
    v_hash := sha256(convert_to(v_secret, 'UTF8'));
    EXIT WHEN NOT EXISTS (SELECT 1 FROM tally.api_key_secrets s WHERE s.secret_hash = v_hash);
  END LOOP;

  INSERT INTO tally.api_keys AS k (account_id, name, prefix, created_by, expires_at)
  VALUES (p_account_id, btrim(p_name), left(v_secret, 12), (select auth.uid()), p_expires_at)
  RETURNING k.id INTO v_id;
  INSERT INTO tally.api_key_secrets (account_id, api_key_id, secret_hash) VALUES (p_account_id, v_id, v_hash);

  RETURN QUERY SELECT v_id, p_account_id, btrim(p_name), left(v_secret, 12), v_secret, p_expires_at;
END
$$;

--
-- Name: FUNCTION create_api_key(p_account_id uuid, p_name text, p_expires_at timestamp with time zone); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.create_api_key(p_account_id uuid, p_name text, p_expires_at timestamp with time zone) IS 'Creates an API key and returns its secret: the only time the secret exists outside the caller (the database keeps its SHA-256 in tally.api_key_secrets). Needs role admin on the account or a service caller. Errors: invalid_parameter (22023), forbidden (42501); account_not_found (P0002) for service callers.';

--
-- Name: detach_meter(regclass); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.detach_meter(p_table regclass) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_found boolean;
BEGIN
  IF NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', '42501', 'detach_meter: service callers only');
  END IF;
  DELETE FROM tally.meters m WHERE m.table_id = p_table;
  v_found := FOUND;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = p_table AND t.tgname = 'tally_meter'
             AND t.tgfoid = 'tally.tg_meter__insert()'::regprocedure) THEN
    EXECUTE format('DROP TRIGGER tally_meter ON %s', p_table);
    v_found := true;
  END IF;
  RETURN v_found;
END
$$;

--
-- Name: FUNCTION detach_meter(p_table regclass); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.detach_meter(p_table regclass) IS 'Stops metering a table: drops its trigger and mapping. Returns false when it was not metered. Events already recorded stay. Service callers only.';

--
-- Name: ensure_partitions(integer); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.ensure_partitions(p_months_ahead integer DEFAULT NULL::integer) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET lock_timeout TO '10s'
    SET "TimeZone" TO 'UTC'
    AS $$
DECLARE
  v_ahead     integer := coalesce(p_months_ahead, tally._setting_int('partitions.months_ahead'));
  v_month     timestamptz;
  v_moved     bigint;
  v_total     bigint := 0;
  v_created   text[] := '{}';
  v_truncated boolean := false;
BEGIN
  IF v_ahead IS NULL OR v_ahead < 0 OR v_ahead > 120 THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('months_ahead: must be between 0 and 120 (got %s)', p_months_ahead));
  END IF;
  -- One DDL run at a time; a second caller waits, then finds the work done.
  PERFORM pg_advisory_xact_lock(hashtext('tally.ensure_partitions'));
  FOR v_month IN
    -- this month and the months ahead ...
    SELECT m FROM generate_series(date_trunc('month', now(), 'UTC'),
                                  date_trunc('month', now(), 'UTC') + make_interval(months => v_ahead),
                                  interval '1 month') AS m
    UNION
    -- ... and every month that has events waiting in the default partition (late or
    -- far-future events, imports of history).
    SELECT DISTINCT date_trunc('month', d.occurred_at, 'UTC') FROM tally.events_default d
    ORDER BY 1
  LOOP
    v_moved := tally._create_events_partition(v_month);
    IF v_moved IS NOT NULL THEN
      v_created := v_created || ('events_p' || to_char(v_month, 'YYYY_MM'));
      v_total := v_total + v_moved;
    END IF;
  END LOOP;
  IF v_total > 0 THEN
    -- the moves left dead tuples behind: leave none
    v_truncated := tally._truncate_empty_default_partition();
  END IF;
  RETURN jsonb_build_object(
    'created', to_jsonb(v_created),
    'moved_rows', v_total,
    'default_rows', (SELECT count(*) FROM tally.events_default),
    'default_truncated', v_truncated);
END
$$;

--
-- Name: FUNCTION ensure_partitions(p_months_ahead integer); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.ensure_partitions(p_months_ahead integer) IS 'Creates the monthly events partitions for this month and the next p_months_ahead (default: setting partitions.months_ahead), plus one for every month with rows in events_default, moving those rows; when that empties events_default it is truncated in the same transaction, so no dead tuple slows later reads (default_truncated; false when a running rollup prevented it, and autovacuum then cleans up). Idempotent; run daily by the worker. Returns {created: [partition names], moved_rows, default_rows, default_truncated}. Service callers only.';

--
-- Name: ensure_partitions_for(timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.ensure_partitions_for(p_from timestamp with time zone, p_to timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET lock_timeout TO '10s'
    SET "TimeZone" TO 'UTC'
    AS $$
DECLARE
  -- only months ingestion would accept events of: within retention, not beyond the skew
  v_from      timestamptz := greatest(p_from, tally._retention_floor('events'));
  v_to        timestamptz := least(p_to, now() + tally._setting_interval('ingest.max_future_skew'));
  v_months    timestamptz[];
  v_month     timestamptz;
  v_moved     bigint;
  v_total     bigint := 0;
  v_created   text[] := '{}';
  v_truncated boolean := false;
BEGIN
  IF NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', '42501', 'ensure_partitions_for: service callers only');
  END IF;
  IF p_from IS NULL OR p_to IS NULL OR p_from > p_to OR p_from = '-infinity' OR p_to = 'infinity' THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('from, to: need finite from <= to (got %s, %s)', p_from, p_to));
  END IF;
  IF v_from <= v_to THEN
    SELECT array_agg(m ORDER BY m) INTO v_months
    FROM generate_series(date_trunc('month', v_from, 'UTC'), date_trunc('month', v_to, 'UTC'), interval '1 month') AS m
    WHERE to_regclass(format('tally.%I', 'events_p' || to_char(m, 'YYYY_MM'))) IS NULL;
  END IF;
  IF v_months IS NULL THEN
    -- the common case: every partition exists, no lock taken
    RETURN jsonb_build_object('created', '[]'::jsonb, 'moved_rows', 0, 'default_truncated', false);
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('tally.ensure_partitions'));
  FOREACH v_month IN ARRAY v_months LOOP
    v_moved := tally._create_events_partition(v_month);
    IF v_moved IS NOT NULL THEN
      v_created := v_created || ('events_p' || to_char(v_month, 'YYYY_MM'));
      v_total := v_total + v_moved;
    END IF;
  END LOOP;
  IF v_total > 0 THEN
    v_truncated := tally._truncate_empty_default_partition();
  END IF;
  RETURN jsonb_build_object('created', to_jsonb(v_created), 'moved_rows', v_total, 'default_truncated', v_truncated);
END
$$;

--
-- Name: FUNCTION ensure_partitions_for(p_from timestamp with time zone, p_to timestamp with time zone); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.ensure_partitions_for(p_from timestamp with time zone, p_to timestamp with time zone) IS 'Creates the monthly events partitions (UTC months) overlapping [p_from, p_to], clipped to what ingestion accepts (not before retention.events, not beyond ingest.max_future_skew), so events of that range do not wait in events_default. Rows already waiting in events_default for those months are moved (and events_default truncated if that empties it, as ensure_partitions does). Takes no lock when every partition exists. Called by `tally import` for each chunk, with the range of its rows'' dates. Returns {created, moved_rows, default_truncated}. Service callers only.';

--
-- Name: events; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.events (
    account_id uuid NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    id bigint NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    api_key_id uuid,
    event_type text NOT NULL,
    provider text,
    model text,
    endpoint text,
    method text,
    status_code smallint,
    success boolean NOT NULL,
    error_message text,
    file_type text,
    files bigint,
    bytes bigint,
    tokens_in bigint,
    tokens_out bigint,
    cached boolean DEFAULT false NOT NULL,
    cost_usd numeric(24,12),
    potential_cost_usd numeric(24,12),
    cost_given boolean DEFAULT false NOT NULL,
    potential_cost_given boolean DEFAULT false NOT NULL,
    latency_ms integer,
    quantity numeric(24,12) DEFAULT 1 NOT NULL,
    idempotency_key text,
    properties jsonb,
    CONSTRAINT events_bytes_check CHECK ((bytes >= 0)),
    CONSTRAINT events_cost_usd_check CHECK ((cost_usd >= (0)::numeric)),
    CONSTRAINT events_files_check CHECK ((files >= 0)),
    CONSTRAINT events_latency_ms_check CHECK ((latency_ms >= 0)),
    CONSTRAINT events_potential_cost_usd_check CHECK ((potential_cost_usd >= (0)::numeric)),
    CONSTRAINT events_quantity_check CHECK ((quantity >= (0)::numeric)),
    CONSTRAINT events_status_code_check CHECK (((status_code >= 100) AND (status_code <= 599))),
    CONSTRAINT events_tokens_in_check CHECK ((tokens_in >= 0)),
    CONSTRAINT events_tokens_out_check CHECK ((tokens_out >= 0))
)
PARTITION BY RANGE (occurred_at);

--
-- Name: TABLE events; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.events IS 'The usage ledger: one row per billable thing that happened. Append-only (written by tally.record_events, tally.record_event, tally.import_events and attached meters), range-partitioned by occurred_at per UTC month. Members read their accounts'' events.';

--
-- Name: COLUMN events.id; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.events.id IS 'Monotonic identity drawn when the row is inserted; the rollups fold events by id window.';

--
-- Name: COLUMN events.success; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.events.success IS 'Given, or derived: status_code < 400 when a status is given, else no error_message.';

--
-- Name: COLUMN events.cost_usd; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.events.cost_usd IS 'Given by the caller, or computed from tally.model_prices at occurred_at (0 for a cached call).';

--
-- Name: COLUMN events.potential_cost_usd; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.events.potential_cost_usd IS 'What the call would have cost without the cache: given, else the computed price, else cost_usd. Savings = potential_cost_usd - cost_usd.';

--
-- Name: COLUMN events.cost_given; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.events.cost_given IS 'True when the caller gave cost_usd; tally.reprice only recomputes costs it computed itself.';

--
-- Name: COLUMN events.potential_cost_given; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.events.potential_cost_given IS 'True when the caller gave potential_cost_usd.';

--
-- Name: COLUMN events.quantity; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.events.quantity IS 'Billable units of the event (default 1).';

--
-- Name: events_tail(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.events_tail() RETURNS SETOF tally.events
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
BEGIN
  -- The watermark is put into the statement as a constant, so the planner sees how few ids
  -- lie above it and reads them through the id index, whatever the history behind.
  -- A caller whom row-level security would not filter either (a service, a BYPASSRLS role,
  -- the owner of tally.events) gets every event of the tail, as a direct read would give it.
  IF tally._caller_is_service()
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = tally._caller_role() AND r.rolbypassrls)
     OR pg_catalog.pg_has_role(tally._caller_role(),
          (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'tally.events'::pg_catalog.regclass), 'MEMBER') THEN
    RETURN QUERY EXECUTE format(
      'SELECT e.* FROM tally.events e WHERE e.id > %s
         AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)',
      tally.rollup_watermark());
  ELSE
    -- the member policy of tally.events (events_member_read), applied here because the
    -- owner bypasses row-level security
    RETURN QUERY EXECUTE format(
      'SELECT e.* FROM tally.events e WHERE e.id > %s AND e.account_id = ANY ($1)
         AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)',
      tally.rollup_watermark())
      USING tally._my_account_ids();
  END IF;
END
$_$;

--
-- Name: FUNCTION events_tail(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.events_tail() IS 'The events the rollups have not folded yet (id above the watermark, not voided): all of them for a caller row-level security does not filter (a service, a BYPASSRLS role, the owner of tally.events), those of the caller''s accounts (tally._my_account_ids()) for anyone else, as the member policy on tally.events allows. Runs as its owner so the watermark stays private.';

--
-- Name: get_breakdown(uuid, text, date, date, uuid[], text[], text[], text[], text[], text[], integer, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.get_breakdown(p_account_id uuid, p_dimension text, p_from date, p_to date, p_api_key_ids uuid[] DEFAULT NULL::uuid[], p_event_types text[] DEFAULT NULL::text[], p_providers text[] DEFAULT NULL::text[], p_models text[] DEFAULT NULL::text[], p_endpoints text[] DEFAULT NULL::text[], p_file_types text[] DEFAULT NULL::text[], p_limit integer DEFAULT 10, p_measure text DEFAULT 'requests'::text) RETURNS TABLE(rank integer, value text, label text, is_other boolean, share_pct numeric, requests bigint, successful bigint, failed bigint, cached bigint, cache_hit_pct numeric, files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, tokens_total numeric, cost_usd numeric, potential_cost_usd numeric, savings_usd numeric, quantity numeric, unpriced bigint, avg_latency_ms numeric, p50_latency_ms numeric, p95_latency_ms numeric, p99_latency_ms numeric)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    SET jit TO 'off'
    AS $_$
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
$_$;

--
-- Name: FUNCTION get_breakdown(p_account_id uuid, p_dimension text, p_from date, p_to date, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[], p_limit integer, p_measure text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.get_breakdown(p_account_id uuid, p_dimension text, p_from date, p_to date, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[], p_limit integer, p_measure text) IS 'Usage of an account over local days p_from..p_to (both included) by value of one dimension (provider, model, endpoint, file_type, api_key, event_type, status_class), ranked by the measure (requests, cost, bytes or tokens) descending: the first p_limit (1..1000) values, then one row (is_other, label other) for the rest; events without the dimension are the row with value NULL (label (none)). share_pct: each row''s share of the measure, 2 decimals, summing to exactly 100.00 (largest-remainder rounding; all 0 when the total is 0). label: the API key''s name for api_key, else the value. Every metric of get_usage_series. Filters as get_usage_series (status_class takes none). Exact at any moment. Errors: invalid_parameter, past_retention (22023); forbidden (42501). Members of the account and service callers.';

--
-- Name: get_dashboard_stats(uuid, integer); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.get_dashboard_stats(p_account_id uuid, p_days integer DEFAULT 30) RETURNS TABLE(day date, requests bigint, successful bigint, failed bigint, cached bigint, cache_hit_pct numeric, files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, tokens_total numeric, cost_usd numeric, potential_cost_usd numeric, savings_usd numeric, quantity numeric, unpriced bigint, avg_latency_ms numeric, p50_latency_ms numeric, p95_latency_ms numeric, p99_latency_ms numeric, requests_by_provider jsonb, requests_by_model jsonb)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    SET jit TO 'off'
    AS $_$
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
$_$;

--
-- Name: FUNCTION get_dashboard_stats(p_account_id uuid, p_days integer); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.get_dashboard_stats(p_account_id uuid, p_days integer) IS 'The last p_days (1..3660) local days of an account, today included, oldest first, gap-filled: the metrics of get_usage_series plus requests_by_provider and requests_by_model ({"openai": 120, ...}; present values only, {} when none), for a page that wants one call. Exact at any moment. Errors: invalid_parameter, past_retention (22023); forbidden (42501). Members of the account and service callers.';

--
-- Name: get_period_summary(uuid, date); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.get_period_summary(p_account_id uuid, p_month date DEFAULT NULL::date) RETURNS TABLE(month date, period_start timestamp with time zone, period_end timestamp with time zone, as_of timestamp with time zone, elapsed_pct numeric, requests bigint, successful bigint, failed bigint, cached bigint, cache_hit_pct numeric, files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, tokens_total numeric, cost_usd numeric, potential_cost_usd numeric, savings_usd numeric, quantity numeric, unpriced bigint, avg_latency_ms numeric, p50_latency_ms numeric, p95_latency_ms numeric, p99_latency_ms numeric, savings_pct numeric, forecast_requests bigint, forecast_cost_usd numeric, forecast_method text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    SET jit TO 'off'
    AS $_$
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
$_$;

--
-- Name: FUNCTION get_period_summary(p_account_id uuid, p_month date); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.get_period_summary(p_account_id uuid, p_month date) IS 'One local month of an account (p_month: any day of it; NULL: the current month), every event of it: the metrics of get_usage_series, savings_pct (savings / potential cost, 0 when none), and a forecast of the month''s end. Forecast (forecast_method month_to_date_run_rate): the month so far scaled by the month''s length over the time elapsed (as_of = least(now(), period_end); elapsed_pct), requests rounded to an integer and cost to 12 decimals; a finished month''s forecast is its total (forecast_method actual). Exact at any moment. Errors: invalid_parameter for a month not started (22023); forbidden (42501). Members of the account and service callers.';

--
-- Name: get_top_endpoints(uuid, date, date, integer, text, uuid[], text[], text[], text[], text[], text[]); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.get_top_endpoints(p_account_id uuid, p_from date, p_to date, p_limit integer DEFAULT 10, p_order_by text DEFAULT 'requests'::text, p_api_key_ids uuid[] DEFAULT NULL::uuid[], p_event_types text[] DEFAULT NULL::text[], p_providers text[] DEFAULT NULL::text[], p_models text[] DEFAULT NULL::text[], p_endpoints text[] DEFAULT NULL::text[], p_file_types text[] DEFAULT NULL::text[]) RETURNS TABLE(rank integer, endpoint text, requests bigint, successful bigint, failed bigint, error_pct numeric, cost_usd numeric, avg_latency_ms numeric, p95_latency_ms numeric, previous_rank integer, rank_change integer, previous_requests bigint, previous_cost_usd numeric, requests_change_pct numeric)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    SET jit TO 'off'
    AS $$
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
$$;

--
-- Name: FUNCTION get_top_endpoints(p_account_id uuid, p_from date, p_to date, p_limit integer, p_order_by text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.get_top_endpoints(p_account_id uuid, p_from date, p_to date, p_limit integer, p_order_by text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) IS 'The top p_limit (1..1000) endpoints of an account over local days p_from..p_to (both included), ranked (row_number) by requests or cost (p_order_by) descending, ties by endpoint: requests, successful, failed, error_pct, cost_usd, avg and p95 latency; and against the previous period of as many days right before: previous_rank (over all its endpoints; NULL if absent), rank_change = previous_rank - rank (positive: moved up), previous_requests, previous_cost_usd, requests_change_pct (NULL when there were none). Events without an endpoint are not ranked. The part of the previous period past retention.daily counts as empty. Filters as get_usage_series. Exact at any moment. Errors: invalid_parameter, past_retention (22023); forbidden (42501). Members of the account and service callers.';

--
-- Name: get_usage_history(uuid, integer); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.get_usage_history(p_account_id uuid, p_months integer DEFAULT 12) RETURNS TABLE(month date, requests bigint, successful bigint, failed bigint, cached bigint, cache_hit_pct numeric, files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, tokens_total numeric, cost_usd numeric, potential_cost_usd numeric, savings_usd numeric, quantity numeric, unpriced bigint, avg_latency_ms numeric, p50_latency_ms numeric, p95_latency_ms numeric, p99_latency_ms numeric)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    SET jit TO 'off'
    AS $_$
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
$_$;

--
-- Name: FUNCTION get_usage_history(p_account_id uuid, p_months integer); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.get_usage_history(p_account_id uuid, p_months integer) IS 'The last p_months (1..120) local months of an account, the current one included, oldest first, gap-filled, with the metrics of get_usage_series. Read from the monthly rows (kept forever) plus the tail: exact at any moment. Errors: invalid_parameter (22023); forbidden (42501). Members of the account and service callers.';

--
-- Name: get_usage_series(uuid, timestamp with time zone, timestamp with time zone, text, uuid[], text[], text[], text[], text[], text[]); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.get_usage_series(p_account_id uuid, p_from timestamp with time zone, p_to timestamp with time zone, p_granularity text DEFAULT 'day'::text, p_api_key_ids uuid[] DEFAULT NULL::uuid[], p_event_types text[] DEFAULT NULL::text[], p_providers text[] DEFAULT NULL::text[], p_models text[] DEFAULT NULL::text[], p_endpoints text[] DEFAULT NULL::text[], p_file_types text[] DEFAULT NULL::text[]) RETURNS TABLE(bucket_start timestamp with time zone, bucket_end timestamp with time zone, local_date date, requests bigint, successful bigint, failed bigint, cached bigint, cache_hit_pct numeric, files numeric, bytes numeric, tokens_in numeric, tokens_out numeric, tokens_total numeric, cost_usd numeric, potential_cost_usd numeric, savings_usd numeric, quantity numeric, unpriced bigint, avg_latency_ms numeric, p50_latency_ms numeric, p95_latency_ms numeric, p99_latency_ms numeric)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    SET jit TO 'off'
    AS $_$
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
$_$;

--
-- Name: FUNCTION get_usage_series(p_account_id uuid, p_from timestamp with time zone, p_to timestamp with time zone, p_granularity text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.get_usage_series(p_account_id uuid, p_from timestamp with time zone, p_to timestamp with time zone, p_granularity text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) IS 'Usage of an account over time, gap-filled: one row per bucket overlapping [p_from, p_to), whole, oldest first, at granularity hour (UTC hours), day (the account''s local days), week (ISO weeks from Monday, local) or month (local months), with every metric (requests, successful, failed, cached, cache_hit_pct, files, bytes, tokens_in/out/total, cost_usd, potential_cost_usd, savings_usd, quantity, unpriced, avg/p50/p95/p99 latency in ms). Exact at any moment (the unfolded tail included). Filters: lists of API key ids, event types, providers, models, endpoints, file types (NULL: no filter; ANDed). At most 31 days by hour, 3660 days by day, 520 weeks, 120 months. Errors: invalid_parameter, past_retention (22023); forbidden (42501) for a non-member. Members of the account and service callers.';

--
-- Name: has_role_on_account(uuid, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.has_role_on_account(p_account_id uuid, p_role text DEFAULT 'viewer'::text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    select exists (
      select 1 from tally.account_members m
      where m.account_id = p_account_id
        and m.user_id = (select auth.uid())
        and tally._role_rank(m.role) >= tally._role_rank(p_role)
    )
  $$;

--
-- Name: FUNCTION has_role_on_account(p_account_id uuid, p_role text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.has_role_on_account(p_account_id uuid, p_role text) IS 'True when the current Supabase user is a member of the account with at least role p_role (owner > admin > member > viewer; default viewer, i.e. any member).';

--
-- Name: heartbeat(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.heartbeat() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    select jsonb_build_object(
      'at', now(),
      'schema_version', tally.schema_version(),
      'server_version', current_setting('server_version')
    )
  $$;

--
-- Name: FUNCTION heartbeat(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.heartbeat() IS 'The job the worker schedules every minute: proves the scheduler, the worker and the database are all alive. Returns the time, the schema version and the server version.';

--
-- Name: histogram_percentile(bigint[], numeric, integer); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.histogram_percentile(p_hist bigint[], p_fraction numeric, p_latency_max integer DEFAULT NULL::integer) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_bounds integer[] := tally.latency_buckets();
  v_n      numeric := 0;
  v_rank   numeric;
  v_seen   numeric := 0;
  v_k      integer;
  v_lo     numeric;
  v_hi     numeric;
BEGIN
  IF p_fraction IS NULL OR p_fraction < 0 OR p_fraction > 1 THEN
    -- raised here rather than through tally._raise, which members may not execute
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('fraction: must be from 0 to 1 (got %s)', p_fraction), HINT = 'invalid_parameter';
  END IF;
  IF p_hist IS NULL THEN
    RETURN NULL;
  END IF;
  IF cardinality(p_hist) <> 42 OR array_lower(p_hist, 1) <> 1 OR array_position(p_hist, NULL) IS NOT NULL
     OR EXISTS (SELECT 1 FROM unnest(p_hist) c WHERE c < 0) THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'hist: must be a 42-slot latency histogram of counts >= 0 (latency_hist of the rollups)', HINT = 'invalid_parameter';
  END IF;
  SELECT sum(c) INTO v_n FROM unnest(p_hist) c;
  IF v_n = 0 THEN
    RETURN NULL;
  END IF;
  v_rank := greatest(1, ceil(p_fraction * v_n));
  IF v_rank = v_n AND p_latency_max IS NOT NULL THEN
    RETURN p_latency_max;  -- the largest latency is known exactly
  END IF;
  FOR k IN 0..41 LOOP
    v_seen := v_seen + p_hist[k + 1];
    IF v_seen >= v_rank THEN
      v_k := k;
      EXIT;
    END IF;
  END LOOP;
  v_lo := CASE WHEN v_k = 0 THEN 0 ELSE v_bounds[v_k] END;
  v_hi := CASE WHEN v_k = 41 THEN NULL ELSE v_bounds[v_k + 1] - 1 END;
  IF p_latency_max IS NOT NULL THEN
    v_hi := greatest(v_lo, least(coalesce(v_hi, p_latency_max), p_latency_max));
  END IF;
  IF v_hi IS NULL THEN
    RETURN v_lo;  -- the open top slot: at least this
  END IF;
  IF v_lo + v_hi = 0 THEN
    RETURN 0;
  END IF;
  RETURN (2 * v_lo * v_hi / (v_lo + v_hi))::double precision;
END
$$;

--
-- Name: FUNCTION histogram_percentile(p_hist bigint[], p_fraction numeric, p_latency_max integer); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.histogram_percentile(p_hist bigint[], p_fraction numeric, p_latency_max integer) IS 'Estimates the nearest-rank percentile (the smallest latency v with at least max(1, ceil(p_fraction * n)) of the n latencies <= v, as percentile_disc) from a latency_hist of the rollups (sum rows first with tally._hist_sum), in ms: 2 lo hi / (lo + hi) over the integer range [lo, hi] of the slot holding that rank, which is within (hi - lo) / (hi + lo) <= 17.2 % of v, exact below 4 ms. Pass latency_max to bound the top slot (>= 1482910 ms; without it the estimate there is its lower bound). NULL for an empty histogram. Errors: invalid_parameter (22023).';

--
-- Name: import_events(jsonb, text, bigint); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.import_events(p_events jsonb, p_source text, p_first_index bigint DEFAULT 1) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  IF p_source IS NULL OR length(p_source) NOT BETWEEN 1 AND 500 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'source: must be 1 to 500 characters (e.g. the file name)');
  END IF;
  PERFORM tally._check_batch(p_events);
  RETURN tally._ingest(p_events, 'import:' || p_source, coalesce(p_first_index, 1));
END
$$;

--
-- Name: FUNCTION import_events(p_events jsonb, p_source text, p_first_index bigint); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.import_events(p_events jsonb, p_source text, p_first_index bigint) IS 'record_events for bulk loaders such as `tally import`: the same validation, guards and idempotency (result {accepted, duplicates, conflicts, rejected}), with rejected items kept under source ''import:<p_source>'' and indexed from p_first_index (the line number of the first item). Service callers only.';

--
-- Name: latency_buckets(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.latency_buckets() RETURNS integer[]
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ select '{1,2,3,4,6,8,11,16,23,32,45,64,91,128,181,256,362,512,724,1024,1448,2048,2896,4096,5793,8192,11585,16384,23170,32768,46341,65536,92682,131072,185364,262144,370728,524288,741455,1048576,1482910}'::integer[] $$;

--
-- Name: FUNCTION latency_buckets(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.latency_buckets() IS 'The lower bounds (ms) of latency histogram slots 1..41 of the rollups (width_bucket(latency_ms, latency_buckets()) is the slot, 0-based): slot 0 is [0, 1), slot k is [bounds[k], bounds[k+1]), slot 41 is >= 1482910 ms; from 4 ms on each bound is at most 1.5 times the one before (about sqrt(2) times from 16 ms on). Read percentiles with tally.histogram_percentile: the nearest-rank percentile within 17.2 %, exact below 4 ms.';

--
-- Name: pending_events_estimate(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.pending_events_estimate() RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  IF NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', 'pending_events_estimate: service callers only');
  END IF;
  RETURN greatest(0,
    coalesce(pg_catalog.pg_sequence_last_value(pg_catalog.pg_get_serial_sequence('tally.events', 'id')::pg_catalog.regclass), 0)
    - (SELECT s.watermark FROM tally.rollup_state s));
END
$$;

--
-- Name: FUNCTION pending_events_estimate(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.pending_events_estimate() IS 'An upper bound of the events past the rollups'' watermark, read from the events'' id sequence without scanning them (ids of rolled-back inserts count too): for progress displays. tally.rollup_status() counts them exactly. Service callers only.';

--
-- Name: purge_idempotency_keys(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.purge_idempotency_keys() RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_cutoff  timestamptz := now() - tally._setting_interval('ingest.idempotency_retention');
  v_deleted bigint;
BEGIN
  DELETE FROM tally.idempotency_keys k WHERE k.created_at < v_cutoff;
  GET DIAGNOSTICS v_deleted = ROW_COUNT;
  RETURN jsonb_build_object('deleted', v_deleted, 'cutoff', v_cutoff);
END
$$;

--
-- Name: FUNCTION purge_idempotency_keys(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.purge_idempotency_keys() IS 'Forgets idempotency keys older than the setting ingest.idempotency_retention (default 7 days): a retry after that is no longer recognised as a duplicate. Run daily by the worker. Returns {deleted, cutoff}. Service callers only.';

--
-- Name: recompute_rollups(timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.recompute_rollups(p_from timestamp with time zone, p_to timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET jit TO 'off'
    SET "DateStyle" TO 'ISO'
    SET "TimeZone" TO 'UTC'
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
    SELECT 'hourly', u.account_id, u.bucket::text FROM tally.usage_hourly_totals u
    WHERE u.bucket >= date_trunc('hour', p_from, 'UTC') AND u.bucket < p_to
    UNION
    SELECT 'daily', u.account_id, u.bucket::text FROM tally.usage_daily u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN (p_from AT TIME ZONE a.timezone)::date AND ((p_to - interval '1 microsecond') AT TIME ZONE a.timezone)::date
    UNION
    SELECT 'daily', u.account_id, u.bucket::text FROM tally.usage_daily_by_dimension u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN (p_from AT TIME ZONE a.timezone)::date AND ((p_to - interval '1 microsecond') AT TIME ZONE a.timezone)::date
    UNION
    SELECT 'monthly', u.account_id, u.bucket::text FROM tally.usage_monthly_by_dimension u JOIN tally.accounts a ON a.id = u.account_id
    WHERE u.bucket BETWEEN date_trunc('month', (p_from AT TIME ZONE a.timezone))::date
                       AND date_trunc('month', ((p_to - interval '1 microsecond') AT TIME ZONE a.timezone))::date
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

--
-- Name: FUNCTION recompute_rollups(p_from timestamp with time zone, p_to timestamp with time zone); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.recompute_rollups(p_from timestamp with time zone, p_to timestamp with time zone) IS 'Rebuilds every hourly, daily and monthly bucket that overlaps [p_from, p_to) (at most 400 days) from the raw events the rollups have folded (id <= watermark, not voided): after a reprice, a void or a bug fix. Refuses a range starting before the retention of raw events (past_retention, 22023); hourly and daily buckets past their own retention are left alone. Idempotent; runs never overlap it. Returns {rebuilt_buckets: {hourly, daily, monthly}, watermark}. Service callers only.';

--
-- Name: record_event(jsonb); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.record_event(p_event jsonb) RETURNS TABLE(event_id bigint, duplicate boolean, conflict boolean)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET jit TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
DECLARE
  v_result  jsonb;
  v_account uuid;
  v_key     text := p_event ->> 'idempotency_key';
  v_when    timestamptz;
BEGIN
  v_result := tally._ingest(jsonb_build_array(p_event), 'record_event', 0);
  IF jsonb_array_length(v_result -> 'rejected') > 0 THEN
    -- raising also undoes the dead letter _ingest wrote: the caller has the error instead
    PERFORM tally._raise(v_result->'rejected'->0->>'code', tally._reject_sqlstate(v_result->'rejected'->0->>'code'),
                         v_result->'rejected'->0->>'message');
  ELSIF (v_result->>'accepted')::int = 1 THEN
    -- this session drew exactly one id from the events identity just now
    RETURN QUERY SELECT currval(pg_get_serial_sequence('tally.events', 'id')), false, false;
  ELSIF jsonb_array_length(v_result -> 'conflicts') > 0 THEN
    -- the key was used with another payload: the stored event is kept (and the conflict
    -- stays in tally.rejected_events, source record_event)
    RETURN QUERY SELECT (v_result->'conflicts'->0->>'event_id')::bigint, true, true;
  ELSE
    -- a duplicate: the event is valid, so its tenant fields are well-formed UUIDs
    v_account := coalesce((p_event ->> 'account_id')::uuid,
                          (SELECT k.account_id FROM tally.api_keys k WHERE k.id = (p_event ->> 'api_key_id')::uuid));
    SELECT k.occurred_at INTO v_when FROM tally.idempotency_keys k
    WHERE k.account_id = v_account AND k.idempotency_key = v_key;
    RETURN QUERY
      SELECT e.id, true, false FROM tally.events e
      WHERE e.account_id = v_account AND e.occurred_at = v_when AND e.idempotency_key = v_key
      ORDER BY e.id LIMIT 1;
  END IF;
END
$$;

--
-- Name: FUNCTION record_event(p_event jsonb); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.record_event(p_event jsonb) IS 'Records one event and returns (event_id, duplicate, conflict). A duplicate idempotency key returns the original event''s id with duplicate = true; a key already used with a different payload also returns the original id, with duplicate = conflict = true, and keeps the item in tally.rejected_events (idempotency_conflict). An invalid event raises (nothing is stored; the caller has the error): SQLSTATE 22023 with the code in HINT (invalid_type, out_of_range, past_retention, unpriced_model, ...), 28000 for unknown_api_key / revoked_api_key / expired_api_key, P0002 for account_not_found. Usable inside the caller''s own transaction. Service callers only.';

--
-- Name: record_events(jsonb); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.record_events(p_events jsonb) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  PERFORM tally._check_batch(p_events);
  RETURN tally._ingest(p_events, 'record_events', 0);
END
$$;

--
-- Name: FUNCTION record_events(p_events jsonb); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.record_events(p_events jsonb) IS 'Records a JSON array of events (at most the setting ingest.max_batch, default 10000) set-based. Valid items are stored once per (account, idempotency_key); invalid items are refused one by one and kept in tally.rejected_events (including past_retention, and unpriced_model when ingest.refuse_unpriced_models is 1). A key reused with a different payload keeps the first event and is reported in conflicts (code idempotency_conflict, with the stored event_id), not as a duplicate. Returns {accepted, duplicates, conflicts: [{index, code, message, event_id}], rejected: [{index, code, message}]} with 0-based array indexes. Raises invalid_parameter or batch_too_large (22023) only for the array itself. Service callers only.';

--
-- Name: record_job_run(text, timestamp with time zone, timestamp with time zone, boolean, jsonb, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.record_job_run(p_job text, p_started_at timestamp with time zone, p_finished_at timestamp with time zone, p_ok boolean, p_result jsonb DEFAULT NULL::jsonb, p_error text DEFAULT NULL::text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
BEGIN
  IF p_job IS NULL OR p_job !~ '^[a-z][a-z0-9_-]{0,62}$' THEN
    RAISE EXCEPTION 'invalid job name: %', coalesce(p_job, 'null')
      USING ERRCODE = '22023', HINT = 'invalid_parameter';
  END IF;
  IF p_started_at IS NULL OR p_finished_at IS NULL OR p_finished_at < p_started_at OR p_ok IS NULL THEN
    RAISE EXCEPTION 'job run % needs started_at <= finished_at and ok', p_job
      USING ERRCODE = '22023', HINT = 'invalid_parameter';
  END IF;

  INSERT INTO tally.job_runs AS r (job, runs, failures, last_started_at, last_finished_at, last_ok, last_result, last_error)
  VALUES (p_job, 1, CASE WHEN p_ok THEN 0 ELSE 1 END, p_started_at, p_finished_at, p_ok, p_result, left(p_error, 2000))
  ON CONFLICT (job) DO UPDATE SET
    runs             = r.runs + 1,
    failures         = r.failures + CASE WHEN p_ok THEN 0 ELSE 1 END,
    last_started_at  = excluded.last_started_at,
    last_finished_at = excluded.last_finished_at,
    last_ok          = excluded.last_ok,
    last_result      = excluded.last_result,
    last_error       = excluded.last_error;
END
$_$;

--
-- Name: FUNCTION record_job_run(p_job text, p_started_at timestamp with time zone, p_finished_at timestamp with time zone, p_ok boolean, p_result jsonb, p_error text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.record_job_run(p_job text, p_started_at timestamp with time zone, p_finished_at timestamp with time zone, p_ok boolean, p_result jsonb, p_error text) IS 'Records one finished run of a scheduled job (ok or failed, with its result or error, kept to 2000 characters). Raises 22023 (invalid_parameter) for a bad job name or times.';

--
-- Name: remove_account_member(uuid, uuid); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.remove_account_member(p_account_id uuid, p_user_id uuid) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_current text;
BEGIN
  -- Anyone may leave an account; removing someone else needs admin (owner for an owner).
  IF p_user_id IS DISTINCT FROM (select auth.uid()) OR tally._caller_is_service() THEN
    PERFORM tally._require_account_role(p_account_id, 'admin');
  ELSE
    PERFORM tally._require_account_role(p_account_id, 'viewer');
  END IF;

  PERFORM 1 FROM tally.account_members WHERE account_id = p_account_id FOR UPDATE;
  SELECT role INTO v_current FROM tally.account_members WHERE account_id = p_account_id AND user_id = p_user_id;
  IF v_current IS NULL THEN
    RETURN false;
  END IF;
  IF v_current = 'owner' THEN
    IF NOT tally._caller_is_service() AND NOT tally.has_role_on_account(p_account_id, 'owner') THEN
      PERFORM tally._raise('forbidden', '42501', 'only an owner can remove an owner');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tally.account_members
                   WHERE account_id = p_account_id AND role = 'owner' AND user_id <> p_user_id) THEN
      PERFORM tally._raise('last_owner', '22023', 'user_id: cannot remove the account''s last owner');
    END IF;
  END IF;
  DELETE FROM tally.account_members WHERE account_id = p_account_id AND user_id = p_user_id;
  RETURN true;
END
$$;

--
-- Name: FUNCTION remove_account_member(p_account_id uuid, p_user_id uuid); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.remove_account_member(p_account_id uuid, p_user_id uuid) IS 'Removes a user from an account; returns false when they were not a member. A member may remove themselves; removing others needs admin (owner to remove an owner) or a service caller. The last owner cannot be removed (last_owner, 22023).';

--
-- Name: reprice(timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.reprice(p_from timestamp with time zone, p_to timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET jit TO 'off'
    SET "DateStyle" TO 'ISO'
    SET "TimeZone" TO 'UTC'
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

--
-- Name: FUNCTION reprice(p_from timestamp with time zone, p_to timestamp with time zone); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.reprice(p_from timestamp with time zone, p_to timestamp with time zone) IS 'Recomputes cost_usd and potential_cost_usd of the LLM events with occurred_at in [p_from, p_to) from tally.model_prices, for the values Tally computed (never a cost the caller gave), and in the same transaction rebuilds exactly the hourly, daily and monthly buckets the changed events were counted in, so the aggregates and live views stay exact (a run_rollups meanwhile returns skipped and the next one goes on). Refuses (past_retention, nothing changed) when a bucket to rebuild starts before the retention cutoff of raw events, since it can no longer be rebuilt whole. Returns {repriced: n events changed, from, to, rebuilt_buckets: {hourly, daily, monthly}}. Needs READ COMMITTED. Service callers only.';

--
-- Name: revoke_api_key(uuid); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.revoke_api_key(p_id uuid) RETURNS timestamp with time zone
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_account uuid;
  v_revoked timestamptz;
BEGIN
  IF p_id IS NULL THEN
    PERFORM tally._raise('invalid_parameter', 'id is required');
  END IF;
  IF tally._caller_is_service() THEN
    SELECT k.account_id INTO v_account FROM tally.api_keys k WHERE k.id = p_id;
    IF v_account IS NULL THEN
      PERFORM tally._raise('api_key_not_found', format('id: API key %s does not exist', p_id));
    END IF;
  ELSE
    -- only keys of accounts where the caller is an admin; any other id, existing or not,
    -- gets the same answer, which names only the id given
    SELECT k.account_id INTO v_account FROM tally.api_keys k
    WHERE k.id = p_id AND tally.has_role_on_account(k.account_id, 'admin');
    IF v_account IS NULL THEN
      PERFORM tally._raise('forbidden', format('id: requires role admin on the account of API key %s', p_id));
    END IF;
  END IF;
  UPDATE tally.api_keys k SET revoked_at = coalesce(k.revoked_at, now())
  WHERE k.account_id = v_account AND k.id = p_id
  RETURNING k.revoked_at INTO v_revoked;
  RETURN v_revoked;
END
$$;

--
-- Name: FUNCTION revoke_api_key(p_id uuid); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.revoke_api_key(p_id uuid) IS 'Revokes an API key (idempotent: revoking twice keeps the first time) and returns when it was revoked. Needs role admin on its account or a service caller. Errors: forbidden (42501) for a key the caller does not administer, whether it exists or not; api_key_not_found (P0002), service callers only.';

--
-- Name: rollup_status(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.rollup_status() RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
  v_state tally.rollup_state;
  v_tail  jsonb;
BEGIN
  SELECT * INTO v_state FROM tally.rollup_state;
  -- The watermark goes into the statement as a constant (as in tally.events_tail): with it
  -- as a parameter the planner cannot tell how few ids lie above it, and reads the whole
  -- history to find them.
  EXECUTE format($q$
    with tail as (
      -- the events past the watermark in one scan, by (account, UTC hour, dimensions) and
      -- voided or not: what the next runs will fold
      select e.account_id, date_trunc('hour', e.occurred_at, 'UTC') as hour,
             e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type,
             v.event_id is not null as voided, count(*) as n, min(e.received_at) as oldest
      from tally.events e
      left join tally.event_voids v on v.account_id = e.account_id and v.event_id = e.id
      where e.id > %s
      group by 1, 2, 3, 4, 5, 6, 7, 8, 9
    ),
    pending as (
      select coalesce(sum(t.n), 0)::bigint as n, min(t.oldest) as oldest from tail t
    ),
    gaps as (
      -- the hours in which some tuple has no hourly row yet (read by primary key)
      select count(distinct t.hour) as hours, min(t.hour) as oldest
      from tail t
      where not t.voided
        and not exists (
          select 1 from tally.usage_hourly u
          where u.account_id = t.account_id and u.bucket = t.hour
            and u.dim_key = tally._dim_key(t.api_key_id, t.event_type, t.provider, t.model, t.endpoint, t.file_type))
    )
    select jsonb_build_object(
      'pending_events', p.n,
      'oldest_pending_age_seconds', extract(epoch from now() - p.oldest),
      'unaggregated_hours', g.hours,
      'oldest_unaggregated_hour', g.oldest)
    from pending p cross join gaps g$q$, v_state.watermark)
  INTO v_tail;

  RETURN (
    SELECT jsonb_build_object(
      'watermark', v_state.watermark,
      'newest_event_id', coalesce(pg_sequence_last_value(pg_get_serial_sequence('tally.events', 'id')::regclass), 0),
      'last_run_started_at', v_state.last_started_at,
      'last_run_finished_at', v_state.last_finished_at,
      'last_run_duration_ms', v_state.last_duration_ms,
      'last_run_events', v_state.last_events,
      'last_run_waited_for_pids', to_jsonb(v_state.last_waited_for),
      'runs', v_state.runs,
      -- the latest scheduled run's outcome, if one was ever recorded
      'last_run_ok', r.last_ok,
      'last_error', CASE WHEN NOT r.last_ok THEN r.last_error END,
      'last_error_at', CASE WHEN NOT r.last_ok THEN r.last_finished_at END,
      'failures', coalesce(r.failures, 0)) || v_tail
    FROM (SELECT 1) AS one
    LEFT JOIN tally.job_runs r ON r.job = 'tally-rollups');
END
$_$;

--
-- Name: FUNCTION rollup_status(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.rollup_status() IS 'Where the rollups stand: watermark, newest event id, pending events (past the watermark) and the age of the oldest, the UTC hours in which an account has pending (not voided) events of a dimension tuple with no hourly row yet (unaggregated_hours, oldest_unaggregated_hour; cost: one scan of the pending tail, found through the id index whatever the history behind it, and a primary-key probe per distinct tuple in it, so poll it sparingly during a large backlog), the last successful run (time, duration, events, transactions it waited for in vain), and the latest scheduled run''s outcome from tally.job_runs (last_run_ok, last_error and last_error_at when it failed, failures in total). Service callers only.';

--
-- Name: rollup_watermark(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.rollup_watermark() RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ select s.watermark from tally.rollup_state s $$;

--
-- Name: FUNCTION rollup_watermark(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.rollup_watermark() IS 'The rollups'' watermark: events with a higher id are not in usage_hourly/daily/monthly yet (the *_live views add them). Service callers only: it reveals the event count of all tenants together.';

--
-- Name: run_rollups(bigint); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.run_rollups(p_max_events bigint DEFAULT NULL::bigint) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET jit TO 'off'
    AS $$
DECLARE
  v_started  timestamptz := clock_timestamp();
  v_state    tally.rollup_state;
  v_last     bigint;
  v_high     bigint;
  v_waiting  text[];
  v_deadline timestamptz;
  v_pids     integer[];
  v_events   bigint;
  v_lock_timeout text;
BEGIN
  IF p_max_events IS NOT NULL AND p_max_events < 1 THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('max_events: must be at least 1 (got %s)', p_max_events));
  END IF;
  PERFORM tally._require_read_committed('run_rollups');
  -- One run at a time; a second caller returns at once.
  IF NOT pg_try_advisory_xact_lock(hashtext('tally.run_rollups')) THEN
    RETURN jsonb_build_object('skipped', true, 'reason', 'another run_rollups is in progress');
  END IF;
  SELECT * INTO v_state FROM tally.rollup_state FOR UPDATE;

  -- 1. The window: (watermark, high], at most the chunk size.
  v_last := pg_sequence_last_value(pg_get_serial_sequence('tally.events', 'id')::regclass);
  IF v_last IS NULL OR v_last <= v_state.watermark THEN
    UPDATE tally.rollup_state SET last_started_at = v_started, last_finished_at = clock_timestamp(),
      last_duration_ms = extract(epoch FROM clock_timestamp() - v_started) * 1000, last_events = 0,
      last_high = v_state.watermark, last_waited_for = NULL, runs = runs + 1;
    RETURN jsonb_build_object('events', 0, 'watermark', v_state.watermark, 'more', false);
  END IF;
  v_high := v_state.watermark + least(v_last - v_state.watermark, coalesce(p_max_events, tally._setting_int('rollups.chunk_events')));

  -- 2. Wait for the transactions that may own an id <= high not visible yet. Writers that
  --    start now draw ids > high (the sequence only grows), so the set only shrinks.
  v_waiting := tally._events_writers();
  v_deadline := clock_timestamp() + tally._setting_interval('rollups.max_wait');
  WHILE v_waiting IS NOT NULL LOOP
    IF clock_timestamp() > v_deadline THEN
      SELECT pg_catalog.array_agg(DISTINCT coalesce(l.pid, 0)) INTO v_pids
      FROM pg_catalog.pg_locks l WHERE l.virtualtransaction = ANY (v_waiting) AND l.locktype = 'relation';
      UPDATE tally.rollup_state SET last_started_at = v_started, last_finished_at = clock_timestamp(),
        last_duration_ms = extract(epoch FROM clock_timestamp() - v_started) * 1000, last_events = 0,
        last_high = v_state.watermark, last_waited_for = v_pids, runs = runs + 1;
      RETURN jsonb_build_object('events', 0, 'watermark', v_state.watermark, 'more', true, 'waiting_for_pids', to_jsonb(v_pids));
    END IF;
    PERFORM pg_sleep(0.01);
    v_waiting := tally._events_writers(v_waiting);
  END LOOP;

  -- 3. Fold the window into the three grains, then move the watermark, in this transaction.
  --    The fold is a new statement with a new snapshot: every id in the window is now
  --    committed or rolled back for good.
  -- Summarize the id index over the pages written since the last run first: unsummarized
  -- BRIN ranges are read whole, and this keeps the window (and the live tail) cheap. It is
  -- an optimisation only: if a VACUUM or the like holds a partition, skip it this time
  -- rather than wait (autosummarize catches up).
  v_lock_timeout := current_setting('lock_timeout');
  PERFORM set_config('lock_timeout', '200ms', true);
  BEGIN
    PERFORM pg_catalog.brin_summarize_new_values(i.inhrelid::regclass)
    FROM pg_catalog.pg_inherits i WHERE i.inhparent = 'tally.events_id_brin'::regclass;
  EXCEPTION WHEN lock_not_available THEN
    NULL;
  END;
  PERFORM set_config('lock_timeout', v_lock_timeout, true);
  v_events := tally._fold_rollups('window', v_state.watermark, v_high, '{hourly,hourly_totals,daily,monthly,daily_by_dimension,monthly_by_dimension}');

  UPDATE tally.rollup_state SET watermark = v_high, last_started_at = v_started, last_finished_at = clock_timestamp(),
    last_duration_ms = extract(epoch FROM clock_timestamp() - v_started) * 1000, last_events = v_events,
    last_high = v_high, last_waited_for = NULL, runs = runs + 1;
  RETURN jsonb_build_object('events', v_events, 'watermark', v_high, 'more', v_high < v_last);
END
$$;

--
-- Name: FUNCTION run_rollups(p_max_events bigint); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.run_rollups(p_max_events bigint) IS 'Folds the events committed since the watermark (at most p_max_events ids, default setting rollups.chunk_events) into usage_hourly, usage_hourly_totals, usage_daily, usage_monthly, usage_daily_by_dimension and usage_monthly_by_dimension and moves the watermark, in the caller''s transaction: exactly once even when killed, re-run or started twice (the second call returns {skipped: true}). Waits for transactions still inserting into its window, up to setting rollups.max_wait, else returns {waiting_for_pids}. Returns {events, watermark, more}; more = true means call again. Needs READ COMMITTED. Service callers only.';

--
-- Name: schema_version(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.schema_version() RETURNS integer
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ select max(id) from tally.migrations $$;

--
-- Name: FUNCTION schema_version(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.schema_version() IS 'The installed schema version: the id of the newest applied migration. SECURITY DEFINER so callers need no access to the bookkeeping table.';

--
-- Name: account_members; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.account_members (
    account_id uuid NOT NULL,
    user_id uuid NOT NULL,
    role text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT account_members_role_check CHECK ((role = ANY (ARRAY['owner'::text, 'admin'::text, 'member'::text, 'viewer'::text])))
);

--
-- Name: TABLE account_members; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.account_members IS 'Who belongs to which account, with a role: owner > admin > member > viewer. Written only by tally.create_account, tally.set_account_member and tally.remove_account_member.';

--
-- Name: set_account_member(uuid, uuid, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.set_account_member(p_account_id uuid, p_user_id uuid, p_role text) RETURNS tally.account_members
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_current text;
  v_member  tally.account_members;
BEGIN
  PERFORM tally._require_account_role(p_account_id, 'admin');
  IF p_role IS NULL OR tally._role_rank(p_role) = 0 THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('role: %L is not one of owner, admin, member, viewer', p_role));
  END IF;
  IF p_user_id IS NULL OR NOT EXISTS (SELECT 1 FROM auth.users WHERE id = p_user_id) THEN
    PERFORM tally._raise('user_not_found', 'P0002', format('user_id: user %s does not exist', p_user_id));
  END IF;

  -- Lock the account's memberships so two concurrent changes cannot both remove the last owner.
  PERFORM 1 FROM tally.account_members WHERE account_id = p_account_id FOR UPDATE;
  SELECT role INTO v_current FROM tally.account_members WHERE account_id = p_account_id AND user_id = p_user_id;

  IF NOT tally._caller_is_service() AND NOT tally.has_role_on_account(p_account_id, 'owner')
     AND (p_role = 'owner' OR v_current = 'owner') THEN
    PERFORM tally._raise('forbidden', '42501', 'only an owner can grant or change the owner role');
  END IF;
  IF v_current = 'owner' AND p_role <> 'owner'
     AND NOT EXISTS (SELECT 1 FROM tally.account_members
                     WHERE account_id = p_account_id AND role = 'owner' AND user_id <> p_user_id) THEN
    PERFORM tally._raise('last_owner', '22023', 'role: cannot demote the account''s last owner');
  END IF;

  INSERT INTO tally.account_members AS m (account_id, user_id, role)
  VALUES (p_account_id, p_user_id, p_role)
  ON CONFLICT (account_id, user_id) DO UPDATE SET role = excluded.role
  RETURNING * INTO v_member;
  RETURN v_member;
END
$$;

--
-- Name: FUNCTION set_account_member(p_account_id uuid, p_user_id uuid, p_role text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.set_account_member(p_account_id uuid, p_user_id uuid, p_role text) IS 'Adds a user to an account or changes their role. Needs role admin (owner to grant or change the owner role) or a service caller. The last owner cannot be demoted (last_owner, 22023). Errors: invalid_parameter (22023), user_not_found / account_not_found (P0002), forbidden (42501).';

--
-- Name: job_schedules; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.job_schedules (
    job text NOT NULL,
    cron text,
    enabled boolean DEFAULT true NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_by text DEFAULT CURRENT_USER NOT NULL,
    CONSTRAINT job_schedules_cron_check CHECK (((cron IS NULL) OR ((length(cron) <= 200) AND (cron ~ '^[ \t]*[^ \t]+([ \t]+[^ \t]+){4}[ \t]*$'::text)))),
    CONSTRAINT job_schedules_job_check CHECK ((job ~ '^[a-z][a-z0-9_-]{0,62}$'::text))
);

--
-- Name: TABLE job_schedules; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.job_schedules IS 'Overrides of the scheduled jobs'' built-in schedules, one row per overridden job; no row = the default. Read by the worker at start and by `tally schedule list`. Write with tally.set_job_schedule().';

--
-- Name: COLUMN job_schedules.job; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.job_schedules.job IS 'The job (pg-boss queue) name, e.g. tally-heartbeat; the same names as tally.job_runs.';

--
-- Name: COLUMN job_schedules.cron; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.job_schedules.cron IS 'Five-field cron expression, evaluated in UTC, replacing the job''s default; NULL keeps the default (and always for the interval job tally-rollups, whose period is the setting rollups.interval).';

--
-- Name: COLUMN job_schedules.enabled; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.job_schedules.enabled IS 'false: the worker does not schedule (or, for the interval job, offer) the job. It can still be run by hand.';

--
-- Name: COLUMN job_schedules.updated_at; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.job_schedules.updated_at IS 'When the override was last changed.';

--
-- Name: COLUMN job_schedules.updated_by; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.job_schedules.updated_by IS 'The role that last changed the override (current_user of that call).';

--
-- Name: set_job_schedule(text, text, boolean); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.set_job_schedule(p_job text, p_cron text DEFAULT NULL::text, p_enabled boolean DEFAULT true) RETURNS tally.job_schedules
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
  v_row tally.job_schedules;
BEGIN
  IF p_job IS NULL OR p_job !~ '^[a-z][a-z0-9_-]{0,62}$' THEN
    RAISE EXCEPTION 'job: invalid job name %', coalesce(pg_catalog.quote_literal(p_job), 'null')
      USING ERRCODE = '22023', HINT = 'invalid_parameter';
  END IF;
  IF p_cron IS NOT NULL AND (pg_catalog.length(p_cron) > 200 OR p_cron !~ '^[ \t]*[^ \t]+([ \t]+[^ \t]+){4}[ \t]*$') THEN
    RAISE EXCEPTION 'cron: must be five fields (minute hour day-of-month month day-of-week), got %', pg_catalog.quote_literal(p_cron)
      USING ERRCODE = '22023', HINT = 'invalid_parameter';
  END IF;
  IF p_enabled IS NULL THEN
    RAISE EXCEPTION 'enabled: must be true or false' USING ERRCODE = '22023', HINT = 'invalid_parameter';
  END IF;
  -- schedule changes take turns until commit (the CLI and a starting worker take the same
  -- lock before they read the current overrides, so neither acts on a stale one). One lock
  -- for all jobs: changes are rare, and a transaction changing several jobs cannot
  -- deadlock with a worker applying them all.
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('tally.job_schedules'));

  -- the default schedule, enabled, is no override at all: forget the row
  IF p_cron IS NULL AND p_enabled THEN
    DELETE FROM tally.job_schedules s WHERE s.job = p_job;
    RETURN NULL;
  END IF;

  INSERT INTO tally.job_schedules AS s (job, cron, enabled)
  VALUES (p_job, pg_catalog.btrim(p_cron, E' \t'), p_enabled)
  ON CONFLICT (job) DO UPDATE SET
    cron       = excluded.cron,
    enabled    = excluded.enabled,
    updated_at = pg_catalog.now(),
    updated_by = current_user
  RETURNING s.* INTO v_row;
  RETURN v_row;
END
$_$;

--
-- Name: FUNCTION set_job_schedule(p_job text, p_cron text, p_enabled boolean); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.set_job_schedule(p_job text, p_cron text, p_enabled boolean) IS 'Sets a job''s schedule override: p_cron (five fields, UTC; NULL = the default) and p_enabled. Returns the stored row, or NULL when the job is back on its default (the row is deleted). The cron syntax is checked fully by `tally schedule set`; here only its shape. A running worker picks the change up at its next start, or at once when made with `tally schedule`. Errors: invalid_parameter (22023).';

--
-- Name: model_prices; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.model_prices (
    provider text NOT NULL,
    model text NOT NULL,
    effective_from timestamp with time zone NOT NULL,
    input_usd_per_mtok numeric(24,12) NOT NULL,
    output_usd_per_mtok numeric(24,12) NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT model_prices_input_usd_per_mtok_check CHECK ((input_usd_per_mtok >= (0)::numeric)),
    CONSTRAINT model_prices_model_check CHECK (((length(model) >= 1) AND (length(model) <= 200))),
    CONSTRAINT model_prices_output_usd_per_mtok_check CHECK ((output_usd_per_mtok >= (0)::numeric)),
    CONSTRAINT model_prices_provider_check CHECK (((length(provider) >= 1) AND (length(provider) <= 200)))
);

--
-- Name: TABLE model_prices; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.model_prices IS 'LLM prices in USD per million input and output tokens, per provider and model, each in effect from effective_from until the next one. Set with tally.set_model_price(); readable by signed-in users.';

--
-- Name: set_model_price(text, text, numeric, numeric, timestamp with time zone); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.set_model_price(p_provider text, p_model text, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric, p_effective_from timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS tally.model_prices
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_row tally.model_prices;
BEGIN
  IF NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', '42501', 'set_model_price: service callers only');
  END IF;
  IF p_provider IS NULL OR length(p_provider) NOT BETWEEN 1 AND 200 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'provider: must be 1 to 200 characters');
  END IF;
  IF p_model IS NULL OR length(p_model) NOT BETWEEN 1 AND 200 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'model: must be 1 to 200 characters');
  END IF;
  IF p_input_usd_per_mtok IS NULL OR p_input_usd_per_mtok < 0 OR p_input_usd_per_mtok >= 1e12 OR p_input_usd_per_mtok = 'NaN' THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('input_usd_per_mtok: must be a non-negative amount (got %s)', p_input_usd_per_mtok));
  END IF;
  IF p_output_usd_per_mtok IS NULL OR p_output_usd_per_mtok < 0 OR p_output_usd_per_mtok >= 1e12 OR p_output_usd_per_mtok = 'NaN' THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('output_usd_per_mtok: must be a non-negative amount (got %s)', p_output_usd_per_mtok));
  END IF;
  IF p_effective_from IN ('infinity', '-infinity') THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'effective_from: must be a finite time');
  END IF;
  INSERT INTO tally.model_prices AS p (provider, model, effective_from, input_usd_per_mtok, output_usd_per_mtok)
  VALUES (p_provider, p_model, coalesce(p_effective_from, now()), p_input_usd_per_mtok, p_output_usd_per_mtok)
  ON CONFLICT (provider, model, effective_from) DO UPDATE
    SET input_usd_per_mtok = excluded.input_usd_per_mtok, output_usd_per_mtok = excluded.output_usd_per_mtok
  RETURNING * INTO v_row;
  RETURN v_row;
END
$$;

--
-- Name: FUNCTION set_model_price(p_provider text, p_model text, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric, p_effective_from timestamp with time zone); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.set_model_price(p_provider text, p_model text, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric, p_effective_from timestamp with time zone) IS 'Sets the price of a model (USD per million input and output tokens) from p_effective_from (default now); setting the same instant again replaces it. Events already stored keep their cost until tally.reprice() is run over their range. Service callers only. Errors: invalid_parameter (22023), forbidden (42501).';

--
-- Name: settings; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.settings (
    name text NOT NULL,
    kind text NOT NULL,
    value text NOT NULL,
    default_value text NOT NULL,
    min_value text NOT NULL,
    max_value text NOT NULL,
    description text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT settings_kind_check CHECK ((kind = ANY (ARRAY['integer'::text, 'interval'::text]))),
    CONSTRAINT settings_name_check CHECK ((name ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'::text))
);

--
-- Name: TABLE settings; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.settings IS 'Tunable limits (batch size, clock skew, retention windows, ...): value, default, bounds and what each one does. Change with tally.set_setting(name, value).';

--
-- Name: set_setting(text, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.set_setting(p_name text, p_value text) RETURNS tally.settings
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_row   tally.settings;
  v_value text;
BEGIN
  IF NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', '42501', 'set_setting: service callers only');
  END IF;
  SELECT * INTO v_row FROM tally.settings s WHERE s.name = p_name FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM tally._raise('unknown_setting', '22023',
      format('name: no setting %L (known: %s)', p_name, (SELECT string_agg(s.name, ', ' ORDER BY s.name) FROM tally.settings s)));
  END IF;
  v_value := tally._normalize_setting(v_row.kind, coalesce(p_value, v_row.default_value), v_row.min_value, v_row.max_value);
  IF v_value IS NULL THEN
    PERFORM tally._raise('invalid_parameter', '22023',
      format('value: %s must be an %s between %s and %s (got %L)', p_name, v_row.kind, v_row.min_value, v_row.max_value, p_value));
  END IF;
  UPDATE tally.settings s SET value = v_value, updated_at = now() WHERE s.name = p_name RETURNING * INTO v_row;
  RETURN v_row;
END
$$;

--
-- Name: FUNCTION set_setting(p_name text, p_value text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.set_setting(p_name text, p_value text) IS 'Sets a setting (NULL restores its default) after checking its kind and bounds, and returns the row. Service callers only. Errors: unknown_setting, invalid_parameter (22023), forbidden (42501).';

--
-- Name: tg_accounts__lock_timezone(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.tg_accounts__lock_timezone() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  IF NEW.timezone IS DISTINCT FROM OLD.timezone
     AND EXISTS (SELECT 1 FROM tally.usage_daily u WHERE u.account_id = OLD.id) THEN
    PERFORM tally._raise('timezone_locked', '22023',
      format('timezone: account %s already has usage rolled up by day in %s; its calendar cannot change (create a new account for a new time zone)',
             OLD.id, OLD.timezone));
  END IF;
  RETURN NEW;
END
$$;

--
-- Name: FUNCTION tg_accounts__lock_timezone(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.tg_accounts__lock_timezone() IS 'Refuses to change an account''s time zone once it has daily rollups (timezone_locked, 22023): its days and months were cut in the old zone.';

--
-- Name: tg_meter__insert(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.tg_meter__insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET jit TO 'off'
    SET "TimeZone" TO 'UTC'
    AS $$
DECLARE
  v_meter  tally.meters;
  v_chunk  record;
BEGIN
  SELECT * INTO v_meter FROM tally.meters m WHERE m.table_id = TG_RELID::regclass;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  BEGIN
    -- one ingestion per chunk of rows (setting ingest.max_batch), so a huge INSERT ... SELECT
    -- never builds one oversized JSON array
    FOR v_chunk IN EXECUTE v_meter.select_sql USING v_meter.event_type, tally._setting_int('ingest.max_batch') LOOP
      PERFORM tally._ingest(v_chunk.events, 'meter:' || v_meter.table_name, v_chunk.first_index);
    END LOOP;
  EXCEPTION WHEN undefined_column OR undefined_table OR datatype_mismatch OR cannot_coerce THEN
    -- a mapped column was renamed, dropped or retyped after attach: keep the rows, whole,
    -- rather than fail the app's insert
    INSERT INTO tally.rejected_events (source, item_index, code, message, payload)
    SELECT 'meter:' || v_meter.table_name, n.ord - 1, 'meter_mapping_broken',
           format('meter on %s: %s; attach the meter again with tally.attach_meter', v_meter.table_name, SQLERRM),
           n.row
    FROM (SELECT to_jsonb(r) AS row, row_number() OVER () AS ord FROM tally_new_rows r) n;
  END;
  RETURN NULL;
END
$$;

--
-- Name: FUNCTION tg_meter__insert(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.tg_meter__insert() IS 'Statement-level AFTER INSERT trigger installed by tally.attach_meter: turns the statement''s new rows (transition table tally_new_rows) into events with the meter''s generated SELECT and ingests them in chunks; invalid rows go to tally.rejected_events, and so do whole statements whose mapping broke after attach (meter_mapping_broken).';

--
-- Name: unpriced_models(interval); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.unpriced_models(p_window interval DEFAULT '7 days'::interval) RETURNS TABLE(provider text, model text, events bigint, accounts bigint, last_seen_hour timestamp with time zone)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "TimeZone" TO 'UTC'
    AS $_$
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
$_$;

--
-- Name: FUNCTION unpriced_models(p_window interval); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.unpriced_models(p_window interval) IS 'The (provider, model) pairs with unpriced events (tokens, but no tally.model_prices row matched, so the cost is unknown) in the UTC hours since now() - p_window (default 7 days, at most 90): how many events, in how many accounts, and the latest hour with one. Reads the hourly rows holding unpriced events (a partial index) and the unfolded tail, never the history. Most first. Service callers only. Errors: invalid_parameter (22023).';

--
-- Name: update_account(uuid, text, text, text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.update_account(p_account_id uuid, p_name text DEFAULT NULL::text, p_external_id text DEFAULT NULL::text, p_timezone text DEFAULT NULL::text) RETURNS tally.accounts
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_account tally.accounts;
BEGIN
  PERFORM tally._require_account_role(p_account_id, 'admin');
  IF p_external_id IS NOT NULL AND NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', 'external_id: only a service caller sets external_id');
  END IF;
  PERFORM tally._check_account_fields(p_name, p_external_id, p_timezone);
  BEGIN
    UPDATE tally.accounts SET
      name        = coalesce(btrim(p_name), name),
      external_id = coalesce(p_external_id, external_id),
      timezone    = coalesce(p_timezone, timezone),
      updated_at  = now()
    WHERE id = p_account_id
    RETURNING * INTO v_account;
  EXCEPTION WHEN unique_violation THEN
    PERFORM tally._raise('duplicate_external_id', format('external_id: an account with %L already exists', p_external_id));
  END;
  RETURN v_account;
END
$$;

--
-- Name: FUNCTION update_account(p_account_id uuid, p_name text, p_external_id text, p_timezone text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.update_account(p_account_id uuid, p_name text, p_external_id text, p_timezone text) IS 'Changes an account''s name, external_id or timezone (NULL keeps the current value). Needs role admin or a service caller; external_id only a service caller. Errors as tally.create_account; account_not_found (P0002) only for service callers, forbidden (42501) otherwise.';

--
-- Name: verify_api_key(text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.verify_api_key(p_secret text) RETURNS TABLE(api_key_id uuid, account_id uuid)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  v_key record;
BEGIN
  SELECT k.id, k.account_id, k.revoked_at, k.expires_at INTO v_key
  FROM tally.api_key_secrets s
  JOIN tally.api_keys k ON k.account_id = s.account_id AND k.id = s.api_key_id
  WHERE s.secret_hash = sha256(convert_to(coalesce(p_secret, ''), 'UTF8'));
  IF NOT FOUND THEN
    PERFORM tally._raise('unknown_api_key', 'api key: not recognised');
  ELSIF v_key.revoked_at IS NOT NULL THEN
    PERFORM tally._raise('revoked_api_key', format('api key: revoked at %s', v_key.revoked_at));
  ELSIF v_key.expires_at IS NOT NULL AND v_key.expires_at <= now() THEN
    PERFORM tally._raise('expired_api_key', format('api key: expired at %s', v_key.expires_at));
  END IF;
  RETURN QUERY SELECT v_key.id, v_key.account_id;
END
$$;

--
-- Name: FUNCTION verify_api_key(p_secret text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.verify_api_key(p_secret text) IS 'Authenticates a presented secret by its SHA-256 (tally.api_key_secrets) and returns the key and its account. Errors (SQLSTATE 28000): unknown_api_key, revoked_api_key, expired_api_key; the messages name no id. Service callers only.';

--
-- Name: verify_previous_day(); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.verify_previous_day() RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

--
-- Name: FUNCTION verify_previous_day(); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.verify_previous_day() IS 'The daily verification job: tally.verify_rollups over yesterday (UTC). Returns {from, to, mismatches: 0}, or raises rollups_mismatch (P0001) naming the first buckets that differ, so the failed run shows in tally.job_runs and tally status. Service callers only.';

--
-- Name: verify_rollups(timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.verify_rollups(p_from timestamp with time zone, p_to timestamp with time zone) RETURNS TABLE(grain text, account_id uuid, bucket text, dim_key uuid, expected jsonb, actual jsonb, dimension text, value text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET jit TO 'off'
    SET "DateStyle" TO 'ISO'
    SET "TimeZone" TO 'UTC'
    AS $_$
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
    SELECT 'hourly_totals', b.account_id, b.hour_utc::text, NULL, NULL, NULL, %2$s
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
    SELECT 'hourly_totals', u.account_id, u.bucket::text, NULL, NULL, NULL, %4$s
    FROM tally.usage_hourly_totals u
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
$_$;

--
-- Name: FUNCTION verify_rollups(p_from timestamp with time zone, p_to timestamp with time zone); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.verify_rollups(p_from timestamp with time zone, p_to timestamp with time zone) IS 'Compares every hourly, daily and monthly bucket that overlaps [p_from, p_to) (at most 400 days), its hourly totals and its rows by dimension, with the folded raw events (id <= watermark), metric by metric (every metric of tally._rollup_metrics(); hourly and daily buckets past their retention are skipped). Refuses a range starting before the retention of raw events (past_retention, 22023). Returns one row per bucket and dimension tuple (grains hourly, daily, monthly: dim_key), per hour (grain hourly_totals) or per dimension value (grains daily_by_dimension, monthly_by_dimension: dimension, value) that differs (expected from events, actual stored; NULL when missing); no rows = consistent. A mismatch is repaired with tally.recompute_rollups over the same range. Service callers only.';

--
-- Name: void_events(bigint[], text); Type: FUNCTION; Schema: tally; Owner: -
--

CREATE FUNCTION tally.void_events(p_event_ids bigint[], p_reason text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET jit TO 'off'
    SET "DateStyle" TO 'ISO'
    SET "TimeZone" TO 'UTC'
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

--
-- Name: FUNCTION void_events(p_event_ids bigint[], p_reason text); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON FUNCTION tally.void_events(p_event_ids bigint[], p_reason text) IS 'Takes events out of every aggregate, for a reason (1 to 1000 characters): records who, when and why in tally.event_voids (the events stay in tally.events) and rebuilds exactly the hourly, daily and monthly buckets they had been counted in. Voiding twice keeps the first record. Returns {voided, already_void, rebuilt_buckets}. Errors: invalid_parameter (22023), event_not_found (P0002), past_retention (22023, nothing voided) when a bucket to rebuild starts before the raw events'' retention cutoff. Service callers only.';

--
-- Name: _hist_agg(integer, bigint); Type: AGGREGATE; Schema: tally; Owner: -
--

CREATE AGGREGATE tally._hist_agg(integer, bigint) (
    SFUNC = tally._hist_sfunc,
    STYPE = bigint[]
);

--
-- Name: AGGREGATE _hist_agg(integer, bigint); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON AGGREGATE tally._hist_agg(integer, bigint) IS 'Sums (bucket, count) pairs into a dense 42-slot latency histogram.';

--
-- Name: _hist_sum(bigint[]); Type: AGGREGATE; Schema: tally; Owner: -
--

CREATE AGGREGATE tally._hist_sum(bigint[]) (
    SFUNC = tally._hist_add,
    STYPE = bigint[]
);

--
-- Name: AGGREGATE _hist_sum(bigint[]); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON AGGREGATE tally._hist_sum(bigint[]) IS 'Adds latency histograms slot by slot.';

--
-- Name: _sum8(bigint); Type: AGGREGATE; Schema: tally; Owner: -
--

CREATE AGGREGATE tally._sum8(bigint) (
    SFUNC = int8pl,
    STYPE = bigint,
    INITCOND = '0'
);

--
-- Name: AGGREGATE _sum8(bigint); Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON AGGREGATE tally._sum8(bigint) IS 'Sum of bigint counts with a by-value bigint state (int8pl): for the fold''s additions of counts and histogram slots.';

--
-- Name: users; Type: TABLE; Schema: auth; Owner: -
--

CREATE TABLE auth.users (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    email text,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: TABLE users; Type: COMMENT; Schema: auth; Owner: -
--

COMMENT ON TABLE auth.users IS 'Supabase-compatible users table created by Tally on plain PostgreSQL; on Supabase the real one is used.';

--
-- Name: api_key_secrets; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.api_key_secrets (
    account_id uuid NOT NULL,
    api_key_id uuid NOT NULL,
    secret_hash bytea NOT NULL,
    CONSTRAINT api_key_secrets_secret_hash_check CHECK ((length(secret_hash) = 32))
);

--
-- Name: TABLE api_key_secrets; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.api_key_secrets IS 'The SHA-256 of each API key''s secret (never the secret), one row per tally.api_keys row. Readable by no API role; only Tally''s SECURITY DEFINER functions use it.';

--
-- Name: COLUMN api_key_secrets.secret_hash; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.api_key_secrets.secret_hash IS 'sha256 of the secret''s UTF-8 bytes.';

--
-- Name: api_keys; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.api_keys (
    account_id uuid NOT NULL,
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    prefix text NOT NULL,
    created_by uuid,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone,
    revoked_at timestamp with time zone,
    CONSTRAINT api_keys_check CHECK (((expires_at IS NULL) OR (expires_at > created_at))),
    CONSTRAINT api_keys_name_check CHECK (((length(name) >= 1) AND (length(name) <= 200))),
    CONSTRAINT api_keys_prefix_check CHECK ((length(prefix) = 12))
);

--
-- Name: TABLE api_keys; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.api_keys IS 'API keys of an account: name, the visible prefix of the secret, who created it, when it expires or was revoked. The hash of the secret is in tally.api_key_secrets; the secret itself is never stored. Members read their accounts'' keys, every column.';

--
-- Name: COLUMN api_keys.prefix; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.api_keys.prefix IS 'The first 12 characters of the secret, to recognise a key in a list (e.g. tk_live_AbCd).';

--
-- Name: error_codes; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.error_codes (
    code text NOT NULL,
    sqlstate text NOT NULL,
    description text NOT NULL,
    CONSTRAINT error_codes_code_check CHECK ((code ~ '^[a-z][a-z0-9_]{1,62}$'::text)),
    CONSTRAINT error_codes_description_check CHECK (((length(description) >= 1) AND (length(description) <= 500))),
    CONSTRAINT error_codes_sqlstate_check CHECK ((sqlstate ~ '^[0-9A-Z]{5}$'::text))
);

--
-- Name: TABLE error_codes; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.error_codes IS 'Every stable Tally error code the SQL raises (in HINT) or records (in rejected_events), with the SQLSTATE it is raised with. tally._raise looks the SQLSTATE up here by code.';

--
-- Name: COLUMN error_codes.code; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.error_codes.code IS 'The stable code: carried in HINT when raised, in rejected_events.code when recorded.';

--
-- Name: COLUMN error_codes.sqlstate; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.error_codes.sqlstate IS 'The SQLSTATE the code is raised with: 42501 permission, 22023 bad parameter, P0002 not found, 28000 API key, 23505 conflict, P0001 a failed check (rollups_mismatch).';

--
-- Name: event_voids; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.event_voids (
    account_id uuid NOT NULL,
    event_id bigint NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    voided_at timestamp with time zone DEFAULT now() NOT NULL,
    voided_by text NOT NULL,
    reason text NOT NULL,
    CONSTRAINT event_voids_reason_check CHECK (((length(reason) >= 1) AND (length(reason) <= 1000)))
);

--
-- Name: TABLE event_voids; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.event_voids IS 'Events taken out of the aggregates, with who voided them (the database role, and the Supabase user when there is one), when and why. The events themselves stay in tally.events for audit. Written by tally.void_events; members read their accounts'' voids.';

--
-- Name: events_default; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.events_default (
    account_id uuid NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    id bigint NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    api_key_id uuid,
    event_type text NOT NULL,
    provider text,
    model text,
    endpoint text,
    method text,
    status_code smallint,
    success boolean NOT NULL,
    error_message text,
    file_type text,
    files bigint,
    bytes bigint,
    tokens_in bigint,
    tokens_out bigint,
    cached boolean DEFAULT false NOT NULL,
    cost_usd numeric(24,12),
    potential_cost_usd numeric(24,12),
    cost_given boolean DEFAULT false NOT NULL,
    potential_cost_given boolean DEFAULT false NOT NULL,
    latency_ms integer,
    quantity numeric(24,12) DEFAULT 1 NOT NULL,
    idempotency_key text,
    properties jsonb,
    CONSTRAINT events_bytes_check CHECK ((bytes >= 0)),
    CONSTRAINT events_cost_usd_check CHECK ((cost_usd >= (0)::numeric)),
    CONSTRAINT events_files_check CHECK ((files >= 0)),
    CONSTRAINT events_latency_ms_check CHECK ((latency_ms >= 0)),
    CONSTRAINT events_potential_cost_usd_check CHECK ((potential_cost_usd >= (0)::numeric)),
    CONSTRAINT events_quantity_check CHECK ((quantity >= (0)::numeric)),
    CONSTRAINT events_status_code_check CHECK (((status_code >= 100) AND (status_code <= 599))),
    CONSTRAINT events_tokens_in_check CHECK ((tokens_in >= 0)),
    CONSTRAINT events_tokens_out_check CHECK ((tokens_out >= 0))
);

--
-- Name: TABLE events_default; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.events_default IS 'Catch-all partition for events outside every monthly partition. tally.ensure_partitions() moves its rows into proper partitions; tally status reports how many wait here.';

--
-- Name: events_id_seq; Type: SEQUENCE; Schema: tally; Owner: -
--

ALTER TABLE tally.events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME tally.events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: idempotency_keys; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.idempotency_keys (
    account_id uuid NOT NULL,
    idempotency_key text NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    payload_fingerprint bigint
);

--
-- Name: TABLE idempotency_keys; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.idempotency_keys IS 'Idempotency keys seen per account in the retention window (setting ingest.idempotency_retention), with the occurred_at of the event that claimed each one. Claimed in the same transaction as that event; purged by tally.purge_idempotency_keys().';

--
-- Name: COLUMN idempotency_keys.payload_fingerprint; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.idempotency_keys.payload_fingerprint IS 'Hash of the canonical validated payload of the event that claimed the key (NULL for keys claimed before payloads were compared): a retry with another hash is an idempotency_conflict.';

--
-- Name: job_runs; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.job_runs (
    job text NOT NULL,
    runs bigint DEFAULT 0 NOT NULL,
    failures bigint DEFAULT 0 NOT NULL,
    last_started_at timestamp with time zone,
    last_finished_at timestamp with time zone,
    last_ok boolean,
    last_result jsonb,
    last_error text,
    CONSTRAINT job_runs_failures_check CHECK ((failures >= 0)),
    CONSTRAINT job_runs_job_check CHECK ((job ~ '^[a-z][a-z0-9_-]{0,62}$'::text)),
    CONSTRAINT job_runs_runs_check CHECK ((runs >= 0))
);

--
-- Name: TABLE job_runs; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.job_runs IS 'One row per scheduled job: run and failure counts and the outcome of its latest run. Written by tally.record_job_run().';

--
-- Name: meters; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.meters (
    table_id regclass NOT NULL,
    table_name text NOT NULL,
    event_type text NOT NULL,
    mapping jsonb NOT NULL,
    select_sql text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: TABLE meters; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.meters IS 'Tables metered by tally.attach_meter: the event type, the column mapping as given, and the SELECT generated from it that turns a statement''s new rows into events, in chunks.';

--
-- Name: migrations; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.migrations (
    id integer NOT NULL,
    name character varying(100) NOT NULL,
    hash character varying(40) NOT NULL,
    executed_at timestamp without time zone DEFAULT CURRENT_TIMESTAMP
);

--
-- Name: TABLE migrations; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.migrations IS 'Applied Tally migrations (postgres-migrations bookkeeping): id, name, sha1 of file name and contents, time applied. The highest id is the schema version.';

--
-- Name: rejected_events; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.rejected_events (
    id bigint NOT NULL,
    account_id uuid,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    source text NOT NULL,
    item_index bigint,
    code text NOT NULL,
    message text NOT NULL,
    payload jsonb NOT NULL,
    idempotency_key text,
    CONSTRAINT rejected_events_idempotency_key_check CHECK (((length(idempotency_key) >= 1) AND (length(idempotency_key) <= 255)))
);

--
-- Name: TABLE rejected_events; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.rejected_events IS 'Every item ingestion refused, exactly as it was sent, with the stable code and the message naming the field. source says where it came from (record_events, import:<label>, meter:<table>); item_index is its position there (array index, or line number for imports). account_id is set when the item named a known account or key. An item with an idempotency key and a known account is kept once per source, however often a retry refuses it again.';

--
-- Name: rejected_events_id_seq; Type: SEQUENCE; Schema: tally; Owner: -
--

ALTER TABLE tally.rejected_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME tally.rejected_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: rollup_state; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.rollup_state (
    id boolean DEFAULT true NOT NULL,
    watermark bigint DEFAULT 0 NOT NULL,
    last_started_at timestamp with time zone,
    last_finished_at timestamp with time zone,
    last_duration_ms numeric,
    last_events bigint,
    last_high bigint,
    last_waited_for integer[],
    runs bigint DEFAULT 0 NOT NULL,
    CONSTRAINT rollup_state_id_check CHECK (id),
    CONSTRAINT rollup_state_watermark_check CHECK ((watermark >= 0))
);

--
-- Name: TABLE rollup_state; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.rollup_state IS 'The one row of rollup bookkeeping: every event id <= watermark is folded into usage_hourly, usage_daily and usage_monthly, and no id above it is. Moved only by tally.run_rollups, in the transaction that writes the aggregates.';

--
-- Name: usage_daily; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.usage_daily (
    account_id uuid NOT NULL,
    bucket date NOT NULL,
    dim_key uuid NOT NULL,
    api_key_id uuid,
    event_type text NOT NULL,
    provider text,
    model text,
    endpoint text,
    file_type text,
    requests bigint NOT NULL,
    successful bigint NOT NULL,
    failed bigint NOT NULL,
    cached bigint NOT NULL,
    files numeric NOT NULL,
    bytes numeric NOT NULL,
    tokens_in numeric NOT NULL,
    tokens_out numeric NOT NULL,
    cost_usd numeric NOT NULL,
    potential_cost_usd numeric NOT NULL,
    quantity numeric NOT NULL,
    latency_count bigint NOT NULL,
    latency_sum numeric NOT NULL,
    latency_max integer,
    latency_hist bigint[] NOT NULL,
    unpriced bigint DEFAULT 0 NOT NULL,
    CONSTRAINT usage_hourly_latency_hist_check CHECK ((cardinality(latency_hist) = 42))
)
WITH (fillfactor='90');

--
-- Name: TABLE usage_daily; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.usage_daily IS 'Usage per calendar day in the account''s time zone (bucket = the local date) and dimension tuple; the same metrics as tally.usage_hourly.';

--
-- Name: COLUMN usage_daily.unpriced; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.usage_daily.unpriced IS 'Events with tokens whose cost (or, for a cached call, potential cost) Tally had to compute but found no tally.model_prices row for (see tally.usage_hourly.unpriced).';

--
-- Name: usage_daily_by_dimension; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.usage_daily_by_dimension (
    account_id uuid NOT NULL,
    bucket date NOT NULL,
    dimension text NOT NULL,
    value text,
    requests bigint NOT NULL,
    successful bigint NOT NULL,
    failed bigint NOT NULL,
    cached bigint NOT NULL,
    files numeric NOT NULL,
    bytes numeric NOT NULL,
    tokens_in numeric NOT NULL,
    tokens_out numeric NOT NULL,
    cost_usd numeric NOT NULL,
    potential_cost_usd numeric NOT NULL,
    quantity numeric NOT NULL,
    latency_count bigint NOT NULL,
    latency_sum numeric NOT NULL,
    latency_max integer,
    latency_hist bigint[] NOT NULL,
    unpriced bigint DEFAULT 0 NOT NULL,
    CONSTRAINT usage_daily_by_dimension_dimension_check CHECK ((dimension = ANY (ARRAY['event_type'::text, 'api_key'::text, 'provider'::text, 'model'::text, 'endpoint'::text, 'file_type'::text, 'status_class'::text]))),
    CONSTRAINT usage_daily_by_dimension_latency_hist_check CHECK ((cardinality(latency_hist) = 42))
)
WITH (fillfactor='90');

--
-- Name: TABLE usage_daily_by_dimension; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.usage_daily_by_dimension IS 'Usage per local day of the account (bucket) and value of one dimension (event_type, api_key, provider, model, endpoint, file_type, status_class; value NULL = absent): the metrics of usage_daily. Each event counts once per dimension, so the rows of one dimension of a day sum to the day''s totals. Written only by tally.run_rollups and the corrections; kept for retention.daily; members read their accounts'' rows.';

--
-- Name: COLUMN usage_daily_by_dimension.dimension; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.usage_daily_by_dimension.dimension IS 'event_type, api_key, provider, model, endpoint, file_type or status_class (the class of status_code: 1xx..5xx).';

--
-- Name: COLUMN usage_daily_by_dimension.value; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.usage_daily_by_dimension.value IS 'The value of the dimension as text (api_key: the key id; status_class: 2xx etc.); NULL for events without one.';

--
-- Name: usage_daily_live; Type: VIEW; Schema: tally; Owner: -
--

CREATE VIEW tally.usage_daily_live WITH (security_invoker='true') AS
 SELECT x.account_id,
    x.bucket,
    x.dim_key,
    x.api_key_id,
    x.event_type,
    x.provider,
    x.model,
    x.endpoint,
    x.file_type,
    (sum(x.requests))::bigint AS requests,
    (sum(x.successful))::bigint AS successful,
    (sum(x.failed))::bigint AS failed,
    (sum(x.cached))::bigint AS cached,
    sum(x.files) AS files,
    sum(x.bytes) AS bytes,
    sum(x.tokens_in) AS tokens_in,
    sum(x.tokens_out) AS tokens_out,
    sum(x.cost_usd) AS cost_usd,
    sum(x.potential_cost_usd) AS potential_cost_usd,
    sum(x.quantity) AS quantity,
    (sum(x.latency_count))::bigint AS latency_count,
    sum(x.latency_sum) AS latency_sum,
    max(x.latency_max) AS latency_max,
    ARRAY[(sum(x.latency_hist_h0))::bigint, (sum(x.latency_hist_h1))::bigint, (sum(x.latency_hist_h2))::bigint, (sum(x.latency_hist_h3))::bigint, (sum(x.latency_hist_h4))::bigint, (sum(x.latency_hist_h5))::bigint, (sum(x.latency_hist_h6))::bigint, (sum(x.latency_hist_h7))::bigint, (sum(x.latency_hist_h8))::bigint, (sum(x.latency_hist_h9))::bigint, (sum(x.latency_hist_h10))::bigint, (sum(x.latency_hist_h11))::bigint, (sum(x.latency_hist_h12))::bigint, (sum(x.latency_hist_h13))::bigint, (sum(x.latency_hist_h14))::bigint, (sum(x.latency_hist_h15))::bigint, (sum(x.latency_hist_h16))::bigint, (sum(x.latency_hist_h17))::bigint, (sum(x.latency_hist_h18))::bigint, (sum(x.latency_hist_h19))::bigint, (sum(x.latency_hist_h20))::bigint, (sum(x.latency_hist_h21))::bigint, (sum(x.latency_hist_h22))::bigint, (sum(x.latency_hist_h23))::bigint, (sum(x.latency_hist_h24))::bigint, (sum(x.latency_hist_h25))::bigint, (sum(x.latency_hist_h26))::bigint, (sum(x.latency_hist_h27))::bigint, (sum(x.latency_hist_h28))::bigint, (sum(x.latency_hist_h29))::bigint, (sum(x.latency_hist_h30))::bigint, (sum(x.latency_hist_h31))::bigint, (sum(x.latency_hist_h32))::bigint, (sum(x.latency_hist_h33))::bigint, (sum(x.latency_hist_h34))::bigint, (sum(x.latency_hist_h35))::bigint, (sum(x.latency_hist_h36))::bigint, (sum(x.latency_hist_h37))::bigint, (sum(x.latency_hist_h38))::bigint, (sum(x.latency_hist_h39))::bigint, (sum(x.latency_hist_h40))::bigint, (sum(x.latency_hist_h41))::bigint] AS latency_hist,
    (sum(x.unpriced))::bigint AS unpriced
   FROM ( SELECT u.account_id,
            u.bucket,
            u.dim_key,
            u.api_key_id,
            u.event_type,
            u.provider,
            u.model,
            u.endpoint,
            u.file_type,
            u.requests,
            u.successful,
            u.failed,
            u.cached,
            u.files,
            u.bytes,
            u.tokens_in,
            u.tokens_out,
            u.cost_usd,
            u.potential_cost_usd,
            u.quantity,
            u.latency_count,
            u.latency_sum,
            u.latency_max,
            u.latency_hist[1] AS latency_hist_h0,
            u.latency_hist[2] AS latency_hist_h1,
            u.latency_hist[3] AS latency_hist_h2,
            u.latency_hist[4] AS latency_hist_h3,
            u.latency_hist[5] AS latency_hist_h4,
            u.latency_hist[6] AS latency_hist_h5,
            u.latency_hist[7] AS latency_hist_h6,
            u.latency_hist[8] AS latency_hist_h7,
            u.latency_hist[9] AS latency_hist_h8,
            u.latency_hist[10] AS latency_hist_h9,
            u.latency_hist[11] AS latency_hist_h10,
            u.latency_hist[12] AS latency_hist_h11,
            u.latency_hist[13] AS latency_hist_h12,
            u.latency_hist[14] AS latency_hist_h13,
            u.latency_hist[15] AS latency_hist_h14,
            u.latency_hist[16] AS latency_hist_h15,
            u.latency_hist[17] AS latency_hist_h16,
            u.latency_hist[18] AS latency_hist_h17,
            u.latency_hist[19] AS latency_hist_h18,
            u.latency_hist[20] AS latency_hist_h19,
            u.latency_hist[21] AS latency_hist_h20,
            u.latency_hist[22] AS latency_hist_h21,
            u.latency_hist[23] AS latency_hist_h22,
            u.latency_hist[24] AS latency_hist_h23,
            u.latency_hist[25] AS latency_hist_h24,
            u.latency_hist[26] AS latency_hist_h25,
            u.latency_hist[27] AS latency_hist_h26,
            u.latency_hist[28] AS latency_hist_h27,
            u.latency_hist[29] AS latency_hist_h28,
            u.latency_hist[30] AS latency_hist_h29,
            u.latency_hist[31] AS latency_hist_h30,
            u.latency_hist[32] AS latency_hist_h31,
            u.latency_hist[33] AS latency_hist_h32,
            u.latency_hist[34] AS latency_hist_h33,
            u.latency_hist[35] AS latency_hist_h34,
            u.latency_hist[36] AS latency_hist_h35,
            u.latency_hist[37] AS latency_hist_h36,
            u.latency_hist[38] AS latency_hist_h37,
            u.latency_hist[39] AS latency_hist_h38,
            u.latency_hist[40] AS latency_hist_h39,
            u.latency_hist[41] AS latency_hist_h40,
            u.latency_hist[42] AS latency_hist_h41,
            u.unpriced
           FROM tally.usage_daily u
        UNION ALL
         SELECT e.account_id,
            ((e.occurred_at AT TIME ZONE a.timezone))::date AS timezone,
            (md5(concat_ws('|'::text, COALESCE((e.api_key_id)::text, '-'::text), COALESCE(((length(e.event_type) || ':'::text) || e.event_type), '-'::text), COALESCE(((length(e.provider) || ':'::text) || e.provider), '-'::text), COALESCE(((length(e.model) || ':'::text) || e.model), '-'::text), COALESCE(((length(e.endpoint) || ':'::text) || e.endpoint), '-'::text), COALESCE(((length(e.file_type) || ':'::text) || e.file_type), '-'::text))))::uuid AS md5,
            e.api_key_id,
            e.event_type,
            e.provider,
            e.model,
            e.endpoint,
            e.file_type,
            (1)::bigint AS int8,
            (
                CASE
                    WHEN e.success THEN 1
                    ELSE 0
                END)::bigint AS int8,
            (
                CASE
                    WHEN e.success THEN 0
                    ELSE 1
                END)::bigint AS int8,
            (
                CASE
                    WHEN e.cached THEN 1
                    ELSE 0
                END)::bigint AS int8,
            (COALESCE(e.files, (0)::bigint))::numeric AS "coalesce",
            (COALESCE(e.bytes, (0)::bigint))::numeric AS "coalesce",
            (COALESCE(e.tokens_in, (0)::bigint))::numeric AS "coalesce",
            (COALESCE(e.tokens_out, (0)::bigint))::numeric AS "coalesce",
            COALESCE(e.cost_usd, (0)::numeric) AS "coalesce",
            COALESCE(e.potential_cost_usd, (0)::numeric) AS "coalesce",
            (e.quantity)::numeric AS quantity,
            (
                CASE
                    WHEN (e.latency_ms IS NULL) THEN 0
                    ELSE 1
                END)::bigint AS int8,
            (COALESCE(e.latency_ms, 0))::numeric AS "coalesce",
            e.latency_ms,
                CASE
                    WHEN (e.latency_ms < 1) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1) AND (e.latency_ms < 2)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 2) AND (e.latency_ms < 3)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 3) AND (e.latency_ms < 4)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 4) AND (e.latency_ms < 6)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 6) AND (e.latency_ms < 8)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 8) AND (e.latency_ms < 11)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 11) AND (e.latency_ms < 16)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 16) AND (e.latency_ms < 23)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 23) AND (e.latency_ms < 32)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 32) AND (e.latency_ms < 45)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 45) AND (e.latency_ms < 64)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 64) AND (e.latency_ms < 91)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 91) AND (e.latency_ms < 128)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 128) AND (e.latency_ms < 181)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 181) AND (e.latency_ms < 256)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 256) AND (e.latency_ms < 362)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 362) AND (e.latency_ms < 512)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 512) AND (e.latency_ms < 724)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 724) AND (e.latency_ms < 1024)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1024) AND (e.latency_ms < 1448)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1448) AND (e.latency_ms < 2048)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 2048) AND (e.latency_ms < 2896)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 2896) AND (e.latency_ms < 4096)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 4096) AND (e.latency_ms < 5793)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 5793) AND (e.latency_ms < 8192)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 8192) AND (e.latency_ms < 11585)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 11585) AND (e.latency_ms < 16384)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 16384) AND (e.latency_ms < 23170)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 23170) AND (e.latency_ms < 32768)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 32768) AND (e.latency_ms < 46341)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 46341) AND (e.latency_ms < 65536)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 65536) AND (e.latency_ms < 92682)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 92682) AND (e.latency_ms < 131072)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 131072) AND (e.latency_ms < 185364)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 185364) AND (e.latency_ms < 262144)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 262144) AND (e.latency_ms < 370728)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 370728) AND (e.latency_ms < 524288)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 524288) AND (e.latency_ms < 741455)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 741455) AND (e.latency_ms < 1048576)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1048576) AND (e.latency_ms < 1482910)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN (e.latency_ms >= 1482910) THEN 1
                    ELSE 0
                END AS "case",
            (
                CASE
                    WHEN (((e.tokens_in IS NOT NULL) OR (e.tokens_out IS NOT NULL)) AND ((e.cost_usd IS NULL) OR (e.potential_cost_usd IS NULL))) THEN 1
                    ELSE 0
                END)::bigint AS int8
           FROM (tally.events_tail() e(account_id, occurred_at, id, received_at, api_key_id, event_type, provider, model, endpoint, method, status_code, success, error_message, file_type, files, bytes, tokens_in, tokens_out, cached, cost_usd, potential_cost_usd, cost_given, potential_cost_given, latency_ms, quantity, idempotency_key, properties)
             JOIN tally.accounts a ON ((a.id = e.account_id)))) x
  GROUP BY x.account_id, x.bucket, x.dim_key, x.api_key_id, x.event_type, x.provider, x.model, x.endpoint, x.file_type;

--
-- Name: VIEW usage_daily_live; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON VIEW tally.usage_daily_live IS 'tally.usage_daily plus the events not folded yet: exact usage per the calendar day in the account''s time zone and dimension tuple at any moment. Filter on account_id and bucket; the cost is the matching rows plus the unfolded tail.';

--
-- Name: usage_hourly; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.usage_hourly (
    account_id uuid NOT NULL,
    bucket timestamp with time zone NOT NULL,
    dim_key uuid NOT NULL,
    api_key_id uuid,
    event_type text NOT NULL,
    provider text,
    model text,
    endpoint text,
    file_type text,
    requests bigint NOT NULL,
    successful bigint NOT NULL,
    failed bigint NOT NULL,
    cached bigint NOT NULL,
    files numeric NOT NULL,
    bytes numeric NOT NULL,
    tokens_in numeric NOT NULL,
    tokens_out numeric NOT NULL,
    cost_usd numeric NOT NULL,
    potential_cost_usd numeric NOT NULL,
    quantity numeric NOT NULL,
    latency_count bigint NOT NULL,
    latency_sum numeric NOT NULL,
    latency_max integer,
    latency_hist bigint[] NOT NULL,
    unpriced bigint DEFAULT 0 NOT NULL,
    CONSTRAINT usage_hourly_latency_hist_check CHECK ((cardinality(latency_hist) = 42))
)
WITH (fillfactor='90');

--
-- Name: TABLE usage_hourly; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.usage_hourly IS 'Usage per UTC hour (bucket = the hour''s start) and dimension tuple (api_key_id, event_type, provider, model, endpoint, file_type; NULL = absent). Sums of the events'' metrics; latency_hist counts events per tally.latency_buckets() bucket. Written only by tally.run_rollups; members read their accounts'' rows.';

--
-- Name: COLUMN usage_hourly.unpriced; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.usage_hourly.unpriced IS 'Events with tokens whose cost (or, for a cached call, potential cost) Tally had to compute but found no tally.model_prices row for: their cost_usd counts as 0 here, but it is unknown, not free.';

--
-- Name: usage_hourly_live; Type: VIEW; Schema: tally; Owner: -
--

CREATE VIEW tally.usage_hourly_live WITH (security_invoker='true') AS
 SELECT x.account_id,
    x.bucket,
    x.dim_key,
    x.api_key_id,
    x.event_type,
    x.provider,
    x.model,
    x.endpoint,
    x.file_type,
    (sum(x.requests))::bigint AS requests,
    (sum(x.successful))::bigint AS successful,
    (sum(x.failed))::bigint AS failed,
    (sum(x.cached))::bigint AS cached,
    sum(x.files) AS files,
    sum(x.bytes) AS bytes,
    sum(x.tokens_in) AS tokens_in,
    sum(x.tokens_out) AS tokens_out,
    sum(x.cost_usd) AS cost_usd,
    sum(x.potential_cost_usd) AS potential_cost_usd,
    sum(x.quantity) AS quantity,
    (sum(x.latency_count))::bigint AS latency_count,
    sum(x.latency_sum) AS latency_sum,
    max(x.latency_max) AS latency_max,
    ARRAY[(sum(x.latency_hist_h0))::bigint, (sum(x.latency_hist_h1))::bigint, (sum(x.latency_hist_h2))::bigint, (sum(x.latency_hist_h3))::bigint, (sum(x.latency_hist_h4))::bigint, (sum(x.latency_hist_h5))::bigint, (sum(x.latency_hist_h6))::bigint, (sum(x.latency_hist_h7))::bigint, (sum(x.latency_hist_h8))::bigint, (sum(x.latency_hist_h9))::bigint, (sum(x.latency_hist_h10))::bigint, (sum(x.latency_hist_h11))::bigint, (sum(x.latency_hist_h12))::bigint, (sum(x.latency_hist_h13))::bigint, (sum(x.latency_hist_h14))::bigint, (sum(x.latency_hist_h15))::bigint, (sum(x.latency_hist_h16))::bigint, (sum(x.latency_hist_h17))::bigint, (sum(x.latency_hist_h18))::bigint, (sum(x.latency_hist_h19))::bigint, (sum(x.latency_hist_h20))::bigint, (sum(x.latency_hist_h21))::bigint, (sum(x.latency_hist_h22))::bigint, (sum(x.latency_hist_h23))::bigint, (sum(x.latency_hist_h24))::bigint, (sum(x.latency_hist_h25))::bigint, (sum(x.latency_hist_h26))::bigint, (sum(x.latency_hist_h27))::bigint, (sum(x.latency_hist_h28))::bigint, (sum(x.latency_hist_h29))::bigint, (sum(x.latency_hist_h30))::bigint, (sum(x.latency_hist_h31))::bigint, (sum(x.latency_hist_h32))::bigint, (sum(x.latency_hist_h33))::bigint, (sum(x.latency_hist_h34))::bigint, (sum(x.latency_hist_h35))::bigint, (sum(x.latency_hist_h36))::bigint, (sum(x.latency_hist_h37))::bigint, (sum(x.latency_hist_h38))::bigint, (sum(x.latency_hist_h39))::bigint, (sum(x.latency_hist_h40))::bigint, (sum(x.latency_hist_h41))::bigint] AS latency_hist,
    (sum(x.unpriced))::bigint AS unpriced
   FROM ( SELECT u.account_id,
            u.bucket,
            u.dim_key,
            u.api_key_id,
            u.event_type,
            u.provider,
            u.model,
            u.endpoint,
            u.file_type,
            u.requests,
            u.successful,
            u.failed,
            u.cached,
            u.files,
            u.bytes,
            u.tokens_in,
            u.tokens_out,
            u.cost_usd,
            u.potential_cost_usd,
            u.quantity,
            u.latency_count,
            u.latency_sum,
            u.latency_max,
            u.latency_hist[1] AS latency_hist_h0,
            u.latency_hist[2] AS latency_hist_h1,
            u.latency_hist[3] AS latency_hist_h2,
            u.latency_hist[4] AS latency_hist_h3,
            u.latency_hist[5] AS latency_hist_h4,
            u.latency_hist[6] AS latency_hist_h5,
            u.latency_hist[7] AS latency_hist_h6,
            u.latency_hist[8] AS latency_hist_h7,
            u.latency_hist[9] AS latency_hist_h8,
            u.latency_hist[10] AS latency_hist_h9,
            u.latency_hist[11] AS latency_hist_h10,
            u.latency_hist[12] AS latency_hist_h11,
            u.latency_hist[13] AS latency_hist_h12,
            u.latency_hist[14] AS latency_hist_h13,
            u.latency_hist[15] AS latency_hist_h14,
            u.latency_hist[16] AS latency_hist_h15,
            u.latency_hist[17] AS latency_hist_h16,
            u.latency_hist[18] AS latency_hist_h17,
            u.latency_hist[19] AS latency_hist_h18,
            u.latency_hist[20] AS latency_hist_h19,
            u.latency_hist[21] AS latency_hist_h20,
            u.latency_hist[22] AS latency_hist_h21,
            u.latency_hist[23] AS latency_hist_h22,
            u.latency_hist[24] AS latency_hist_h23,
            u.latency_hist[25] AS latency_hist_h24,
            u.latency_hist[26] AS latency_hist_h25,
            u.latency_hist[27] AS latency_hist_h26,
            u.latency_hist[28] AS latency_hist_h27,
            u.latency_hist[29] AS latency_hist_h28,
            u.latency_hist[30] AS latency_hist_h29,
            u.latency_hist[31] AS latency_hist_h30,
            u.latency_hist[32] AS latency_hist_h31,
            u.latency_hist[33] AS latency_hist_h32,
            u.latency_hist[34] AS latency_hist_h33,
            u.latency_hist[35] AS latency_hist_h34,
            u.latency_hist[36] AS latency_hist_h35,
            u.latency_hist[37] AS latency_hist_h36,
            u.latency_hist[38] AS latency_hist_h37,
            u.latency_hist[39] AS latency_hist_h38,
            u.latency_hist[40] AS latency_hist_h39,
            u.latency_hist[41] AS latency_hist_h40,
            u.latency_hist[42] AS latency_hist_h41,
            u.unpriced
           FROM tally.usage_hourly u
        UNION ALL
         SELECT e.account_id,
            date_trunc('hour'::text, e.occurred_at, 'UTC'::text) AS date_trunc,
            (md5(concat_ws('|'::text, COALESCE((e.api_key_id)::text, '-'::text), COALESCE(((length(e.event_type) || ':'::text) || e.event_type), '-'::text), COALESCE(((length(e.provider) || ':'::text) || e.provider), '-'::text), COALESCE(((length(e.model) || ':'::text) || e.model), '-'::text), COALESCE(((length(e.endpoint) || ':'::text) || e.endpoint), '-'::text), COALESCE(((length(e.file_type) || ':'::text) || e.file_type), '-'::text))))::uuid AS md5,
            e.api_key_id,
            e.event_type,
            e.provider,
            e.model,
            e.endpoint,
            e.file_type,
            (1)::bigint AS int8,
            (
                CASE
                    WHEN e.success THEN 1
                    ELSE 0
                END)::bigint AS int8,
            (
                CASE
                    WHEN e.success THEN 0
                    ELSE 1
                END)::bigint AS int8,
            (
                CASE
                    WHEN e.cached THEN 1
                    ELSE 0
                END)::bigint AS int8,
            (COALESCE(e.files, (0)::bigint))::numeric AS "coalesce",
            (COALESCE(e.bytes, (0)::bigint))::numeric AS "coalesce",
            (COALESCE(e.tokens_in, (0)::bigint))::numeric AS "coalesce",
            (COALESCE(e.tokens_out, (0)::bigint))::numeric AS "coalesce",
            COALESCE(e.cost_usd, (0)::numeric) AS "coalesce",
            COALESCE(e.potential_cost_usd, (0)::numeric) AS "coalesce",
            (e.quantity)::numeric AS quantity,
            (
                CASE
                    WHEN (e.latency_ms IS NULL) THEN 0
                    ELSE 1
                END)::bigint AS int8,
            (COALESCE(e.latency_ms, 0))::numeric AS "coalesce",
            e.latency_ms,
                CASE
                    WHEN (e.latency_ms < 1) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1) AND (e.latency_ms < 2)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 2) AND (e.latency_ms < 3)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 3) AND (e.latency_ms < 4)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 4) AND (e.latency_ms < 6)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 6) AND (e.latency_ms < 8)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 8) AND (e.latency_ms < 11)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 11) AND (e.latency_ms < 16)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 16) AND (e.latency_ms < 23)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 23) AND (e.latency_ms < 32)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 32) AND (e.latency_ms < 45)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 45) AND (e.latency_ms < 64)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 64) AND (e.latency_ms < 91)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 91) AND (e.latency_ms < 128)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 128) AND (e.latency_ms < 181)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 181) AND (e.latency_ms < 256)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 256) AND (e.latency_ms < 362)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 362) AND (e.latency_ms < 512)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 512) AND (e.latency_ms < 724)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 724) AND (e.latency_ms < 1024)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1024) AND (e.latency_ms < 1448)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1448) AND (e.latency_ms < 2048)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 2048) AND (e.latency_ms < 2896)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 2896) AND (e.latency_ms < 4096)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 4096) AND (e.latency_ms < 5793)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 5793) AND (e.latency_ms < 8192)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 8192) AND (e.latency_ms < 11585)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 11585) AND (e.latency_ms < 16384)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 16384) AND (e.latency_ms < 23170)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 23170) AND (e.latency_ms < 32768)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 32768) AND (e.latency_ms < 46341)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 46341) AND (e.latency_ms < 65536)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 65536) AND (e.latency_ms < 92682)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 92682) AND (e.latency_ms < 131072)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 131072) AND (e.latency_ms < 185364)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 185364) AND (e.latency_ms < 262144)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 262144) AND (e.latency_ms < 370728)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 370728) AND (e.latency_ms < 524288)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 524288) AND (e.latency_ms < 741455)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 741455) AND (e.latency_ms < 1048576)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1048576) AND (e.latency_ms < 1482910)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN (e.latency_ms >= 1482910) THEN 1
                    ELSE 0
                END AS "case",
            (
                CASE
                    WHEN (((e.tokens_in IS NOT NULL) OR (e.tokens_out IS NOT NULL)) AND ((e.cost_usd IS NULL) OR (e.potential_cost_usd IS NULL))) THEN 1
                    ELSE 0
                END)::bigint AS int8
           FROM tally.events_tail() e(account_id, occurred_at, id, received_at, api_key_id, event_type, provider, model, endpoint, method, status_code, success, error_message, file_type, files, bytes, tokens_in, tokens_out, cached, cost_usd, potential_cost_usd, cost_given, potential_cost_given, latency_ms, quantity, idempotency_key, properties)) x
  GROUP BY x.account_id, x.bucket, x.dim_key, x.api_key_id, x.event_type, x.provider, x.model, x.endpoint, x.file_type;

--
-- Name: VIEW usage_hourly_live; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON VIEW tally.usage_hourly_live IS 'tally.usage_hourly plus the events not folded yet: exact usage per the UTC hour and dimension tuple at any moment. Filter on account_id and bucket; the cost is the matching rows plus the unfolded tail.';

--
-- Name: usage_hourly_totals; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.usage_hourly_totals (
    account_id uuid NOT NULL,
    bucket timestamp with time zone NOT NULL,
    requests bigint NOT NULL,
    successful bigint NOT NULL,
    failed bigint NOT NULL,
    cached bigint NOT NULL,
    files numeric NOT NULL,
    bytes numeric NOT NULL,
    tokens_in numeric NOT NULL,
    tokens_out numeric NOT NULL,
    cost_usd numeric NOT NULL,
    potential_cost_usd numeric NOT NULL,
    quantity numeric NOT NULL,
    latency_count bigint NOT NULL,
    latency_sum numeric NOT NULL,
    latency_max integer,
    latency_hist bigint[] NOT NULL,
    unpriced bigint DEFAULT 0 NOT NULL,
    CONSTRAINT usage_hourly_totals_latency_hist_check CHECK ((cardinality(latency_hist) = 42))
)
WITH (fillfactor='90');

--
-- Name: TABLE usage_hourly_totals; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.usage_hourly_totals IS 'Usage per account and UTC hour (bucket), whatever the dimension tuple: the metrics of usage_hourly, equal to the sum of the hour''s usage_hourly rows. For questions by hour that filter nothing. Written only by tally.run_rollups and the corrections; kept for retention.hourly; members read their accounts'' rows.';

--
-- Name: COLUMN usage_hourly_totals.bucket; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.usage_hourly_totals.bucket IS 'The UTC hour (its start).';

--
-- Name: usage_monthly; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.usage_monthly (
    account_id uuid NOT NULL,
    bucket date NOT NULL,
    dim_key uuid NOT NULL,
    api_key_id uuid,
    event_type text NOT NULL,
    provider text,
    model text,
    endpoint text,
    file_type text,
    requests bigint NOT NULL,
    successful bigint NOT NULL,
    failed bigint NOT NULL,
    cached bigint NOT NULL,
    files numeric NOT NULL,
    bytes numeric NOT NULL,
    tokens_in numeric NOT NULL,
    tokens_out numeric NOT NULL,
    cost_usd numeric NOT NULL,
    potential_cost_usd numeric NOT NULL,
    quantity numeric NOT NULL,
    latency_count bigint NOT NULL,
    latency_sum numeric NOT NULL,
    latency_max integer,
    latency_hist bigint[] NOT NULL,
    unpriced bigint DEFAULT 0 NOT NULL,
    CONSTRAINT usage_hourly_latency_hist_check CHECK ((cardinality(latency_hist) = 42))
)
WITH (fillfactor='90');

--
-- Name: TABLE usage_monthly; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.usage_monthly IS 'Usage per calendar month in the account''s time zone (bucket = the first local day of the month) and dimension tuple; the same metrics as tally.usage_hourly.';

--
-- Name: COLUMN usage_monthly.unpriced; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.usage_monthly.unpriced IS 'Events with tokens whose cost (or, for a cached call, potential cost) Tally had to compute but found no tally.model_prices row for (see tally.usage_hourly.unpriced).';

--
-- Name: usage_monthly_by_dimension; Type: TABLE; Schema: tally; Owner: -
--

CREATE TABLE tally.usage_monthly_by_dimension (
    account_id uuid NOT NULL,
    bucket date NOT NULL,
    dimension text NOT NULL,
    value text,
    requests bigint NOT NULL,
    successful bigint NOT NULL,
    failed bigint NOT NULL,
    cached bigint NOT NULL,
    files numeric NOT NULL,
    bytes numeric NOT NULL,
    tokens_in numeric NOT NULL,
    tokens_out numeric NOT NULL,
    cost_usd numeric NOT NULL,
    potential_cost_usd numeric NOT NULL,
    quantity numeric NOT NULL,
    latency_count bigint NOT NULL,
    latency_sum numeric NOT NULL,
    latency_max integer,
    latency_hist bigint[] NOT NULL,
    unpriced bigint DEFAULT 0 NOT NULL,
    CONSTRAINT usage_monthly_by_dimension_dimension_check CHECK ((dimension = ANY (ARRAY['event_type'::text, 'api_key'::text, 'provider'::text, 'model'::text, 'endpoint'::text, 'file_type'::text, 'status_class'::text]))),
    CONSTRAINT usage_monthly_by_dimension_latency_hist_check CHECK ((cardinality(latency_hist) = 42))
)
WITH (fillfactor='90');

--
-- Name: TABLE usage_monthly_by_dimension; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON TABLE tally.usage_monthly_by_dimension IS 'Usage per local month of the account (bucket = its first day) and value of one dimension, as tally.usage_daily_by_dimension. Kept forever, like usage_monthly.';

--
-- Name: COLUMN usage_monthly_by_dimension.dimension; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.usage_monthly_by_dimension.dimension IS 'event_type, api_key, provider, model, endpoint, file_type or status_class (the class of status_code: 1xx..5xx).';

--
-- Name: COLUMN usage_monthly_by_dimension.value; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON COLUMN tally.usage_monthly_by_dimension.value IS 'The value of the dimension as text (api_key: the key id; status_class: 2xx etc.); NULL for events without one.';

--
-- Name: usage_monthly_live; Type: VIEW; Schema: tally; Owner: -
--

CREATE VIEW tally.usage_monthly_live WITH (security_invoker='true') AS
 SELECT x.account_id,
    x.bucket,
    x.dim_key,
    x.api_key_id,
    x.event_type,
    x.provider,
    x.model,
    x.endpoint,
    x.file_type,
    (sum(x.requests))::bigint AS requests,
    (sum(x.successful))::bigint AS successful,
    (sum(x.failed))::bigint AS failed,
    (sum(x.cached))::bigint AS cached,
    sum(x.files) AS files,
    sum(x.bytes) AS bytes,
    sum(x.tokens_in) AS tokens_in,
    sum(x.tokens_out) AS tokens_out,
    sum(x.cost_usd) AS cost_usd,
    sum(x.potential_cost_usd) AS potential_cost_usd,
    sum(x.quantity) AS quantity,
    (sum(x.latency_count))::bigint AS latency_count,
    sum(x.latency_sum) AS latency_sum,
    max(x.latency_max) AS latency_max,
    ARRAY[(sum(x.latency_hist_h0))::bigint, (sum(x.latency_hist_h1))::bigint, (sum(x.latency_hist_h2))::bigint, (sum(x.latency_hist_h3))::bigint, (sum(x.latency_hist_h4))::bigint, (sum(x.latency_hist_h5))::bigint, (sum(x.latency_hist_h6))::bigint, (sum(x.latency_hist_h7))::bigint, (sum(x.latency_hist_h8))::bigint, (sum(x.latency_hist_h9))::bigint, (sum(x.latency_hist_h10))::bigint, (sum(x.latency_hist_h11))::bigint, (sum(x.latency_hist_h12))::bigint, (sum(x.latency_hist_h13))::bigint, (sum(x.latency_hist_h14))::bigint, (sum(x.latency_hist_h15))::bigint, (sum(x.latency_hist_h16))::bigint, (sum(x.latency_hist_h17))::bigint, (sum(x.latency_hist_h18))::bigint, (sum(x.latency_hist_h19))::bigint, (sum(x.latency_hist_h20))::bigint, (sum(x.latency_hist_h21))::bigint, (sum(x.latency_hist_h22))::bigint, (sum(x.latency_hist_h23))::bigint, (sum(x.latency_hist_h24))::bigint, (sum(x.latency_hist_h25))::bigint, (sum(x.latency_hist_h26))::bigint, (sum(x.latency_hist_h27))::bigint, (sum(x.latency_hist_h28))::bigint, (sum(x.latency_hist_h29))::bigint, (sum(x.latency_hist_h30))::bigint, (sum(x.latency_hist_h31))::bigint, (sum(x.latency_hist_h32))::bigint, (sum(x.latency_hist_h33))::bigint, (sum(x.latency_hist_h34))::bigint, (sum(x.latency_hist_h35))::bigint, (sum(x.latency_hist_h36))::bigint, (sum(x.latency_hist_h37))::bigint, (sum(x.latency_hist_h38))::bigint, (sum(x.latency_hist_h39))::bigint, (sum(x.latency_hist_h40))::bigint, (sum(x.latency_hist_h41))::bigint] AS latency_hist,
    (sum(x.unpriced))::bigint AS unpriced
   FROM ( SELECT u.account_id,
            u.bucket,
            u.dim_key,
            u.api_key_id,
            u.event_type,
            u.provider,
            u.model,
            u.endpoint,
            u.file_type,
            u.requests,
            u.successful,
            u.failed,
            u.cached,
            u.files,
            u.bytes,
            u.tokens_in,
            u.tokens_out,
            u.cost_usd,
            u.potential_cost_usd,
            u.quantity,
            u.latency_count,
            u.latency_sum,
            u.latency_max,
            u.latency_hist[1] AS latency_hist_h0,
            u.latency_hist[2] AS latency_hist_h1,
            u.latency_hist[3] AS latency_hist_h2,
            u.latency_hist[4] AS latency_hist_h3,
            u.latency_hist[5] AS latency_hist_h4,
            u.latency_hist[6] AS latency_hist_h5,
            u.latency_hist[7] AS latency_hist_h6,
            u.latency_hist[8] AS latency_hist_h7,
            u.latency_hist[9] AS latency_hist_h8,
            u.latency_hist[10] AS latency_hist_h9,
            u.latency_hist[11] AS latency_hist_h10,
            u.latency_hist[12] AS latency_hist_h11,
            u.latency_hist[13] AS latency_hist_h12,
            u.latency_hist[14] AS latency_hist_h13,
            u.latency_hist[15] AS latency_hist_h14,
            u.latency_hist[16] AS latency_hist_h15,
            u.latency_hist[17] AS latency_hist_h16,
            u.latency_hist[18] AS latency_hist_h17,
            u.latency_hist[19] AS latency_hist_h18,
            u.latency_hist[20] AS latency_hist_h19,
            u.latency_hist[21] AS latency_hist_h20,
            u.latency_hist[22] AS latency_hist_h21,
            u.latency_hist[23] AS latency_hist_h22,
            u.latency_hist[24] AS latency_hist_h23,
            u.latency_hist[25] AS latency_hist_h24,
            u.latency_hist[26] AS latency_hist_h25,
            u.latency_hist[27] AS latency_hist_h26,
            u.latency_hist[28] AS latency_hist_h27,
            u.latency_hist[29] AS latency_hist_h28,
            u.latency_hist[30] AS latency_hist_h29,
            u.latency_hist[31] AS latency_hist_h30,
            u.latency_hist[32] AS latency_hist_h31,
            u.latency_hist[33] AS latency_hist_h32,
            u.latency_hist[34] AS latency_hist_h33,
            u.latency_hist[35] AS latency_hist_h34,
            u.latency_hist[36] AS latency_hist_h35,
            u.latency_hist[37] AS latency_hist_h36,
            u.latency_hist[38] AS latency_hist_h37,
            u.latency_hist[39] AS latency_hist_h38,
            u.latency_hist[40] AS latency_hist_h39,
            u.latency_hist[41] AS latency_hist_h40,
            u.latency_hist[42] AS latency_hist_h41,
            u.unpriced
           FROM tally.usage_monthly u
        UNION ALL
         SELECT e.account_id,
            (date_trunc('month'::text, (e.occurred_at AT TIME ZONE a.timezone)))::date AS date_trunc,
            (md5(concat_ws('|'::text, COALESCE((e.api_key_id)::text, '-'::text), COALESCE(((length(e.event_type) || ':'::text) || e.event_type), '-'::text), COALESCE(((length(e.provider) || ':'::text) || e.provider), '-'::text), COALESCE(((length(e.model) || ':'::text) || e.model), '-'::text), COALESCE(((length(e.endpoint) || ':'::text) || e.endpoint), '-'::text), COALESCE(((length(e.file_type) || ':'::text) || e.file_type), '-'::text))))::uuid AS md5,
            e.api_key_id,
            e.event_type,
            e.provider,
            e.model,
            e.endpoint,
            e.file_type,
            (1)::bigint AS int8,
            (
                CASE
                    WHEN e.success THEN 1
                    ELSE 0
                END)::bigint AS int8,
            (
                CASE
                    WHEN e.success THEN 0
                    ELSE 1
                END)::bigint AS int8,
            (
                CASE
                    WHEN e.cached THEN 1
                    ELSE 0
                END)::bigint AS int8,
            (COALESCE(e.files, (0)::bigint))::numeric AS "coalesce",
            (COALESCE(e.bytes, (0)::bigint))::numeric AS "coalesce",
            (COALESCE(e.tokens_in, (0)::bigint))::numeric AS "coalesce",
            (COALESCE(e.tokens_out, (0)::bigint))::numeric AS "coalesce",
            COALESCE(e.cost_usd, (0)::numeric) AS "coalesce",
            COALESCE(e.potential_cost_usd, (0)::numeric) AS "coalesce",
            (e.quantity)::numeric AS quantity,
            (
                CASE
                    WHEN (e.latency_ms IS NULL) THEN 0
                    ELSE 1
                END)::bigint AS int8,
            (COALESCE(e.latency_ms, 0))::numeric AS "coalesce",
            e.latency_ms,
                CASE
                    WHEN (e.latency_ms < 1) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1) AND (e.latency_ms < 2)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 2) AND (e.latency_ms < 3)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 3) AND (e.latency_ms < 4)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 4) AND (e.latency_ms < 6)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 6) AND (e.latency_ms < 8)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 8) AND (e.latency_ms < 11)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 11) AND (e.latency_ms < 16)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 16) AND (e.latency_ms < 23)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 23) AND (e.latency_ms < 32)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 32) AND (e.latency_ms < 45)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 45) AND (e.latency_ms < 64)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 64) AND (e.latency_ms < 91)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 91) AND (e.latency_ms < 128)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 128) AND (e.latency_ms < 181)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 181) AND (e.latency_ms < 256)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 256) AND (e.latency_ms < 362)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 362) AND (e.latency_ms < 512)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 512) AND (e.latency_ms < 724)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 724) AND (e.latency_ms < 1024)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1024) AND (e.latency_ms < 1448)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1448) AND (e.latency_ms < 2048)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 2048) AND (e.latency_ms < 2896)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 2896) AND (e.latency_ms < 4096)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 4096) AND (e.latency_ms < 5793)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 5793) AND (e.latency_ms < 8192)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 8192) AND (e.latency_ms < 11585)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 11585) AND (e.latency_ms < 16384)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 16384) AND (e.latency_ms < 23170)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 23170) AND (e.latency_ms < 32768)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 32768) AND (e.latency_ms < 46341)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 46341) AND (e.latency_ms < 65536)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 65536) AND (e.latency_ms < 92682)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 92682) AND (e.latency_ms < 131072)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 131072) AND (e.latency_ms < 185364)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 185364) AND (e.latency_ms < 262144)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 262144) AND (e.latency_ms < 370728)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 370728) AND (e.latency_ms < 524288)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 524288) AND (e.latency_ms < 741455)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 741455) AND (e.latency_ms < 1048576)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN ((e.latency_ms >= 1048576) AND (e.latency_ms < 1482910)) THEN 1
                    ELSE 0
                END AS "case",
                CASE
                    WHEN (e.latency_ms >= 1482910) THEN 1
                    ELSE 0
                END AS "case",
            (
                CASE
                    WHEN (((e.tokens_in IS NOT NULL) OR (e.tokens_out IS NOT NULL)) AND ((e.cost_usd IS NULL) OR (e.potential_cost_usd IS NULL))) THEN 1
                    ELSE 0
                END)::bigint AS int8
           FROM (tally.events_tail() e(account_id, occurred_at, id, received_at, api_key_id, event_type, provider, model, endpoint, method, status_code, success, error_message, file_type, files, bytes, tokens_in, tokens_out, cached, cost_usd, potential_cost_usd, cost_given, potential_cost_given, latency_ms, quantity, idempotency_key, properties)
             JOIN tally.accounts a ON ((a.id = e.account_id)))) x
  GROUP BY x.account_id, x.bucket, x.dim_key, x.api_key_id, x.event_type, x.provider, x.model, x.endpoint, x.file_type;

--
-- Name: VIEW usage_monthly_live; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON VIEW tally.usage_monthly_live IS 'tally.usage_monthly plus the events not folded yet: exact usage per the calendar month in the account''s time zone and dimension tuple at any moment. Filter on account_id and bucket; the cost is the matching rows plus the unfolded tail.';

--
-- Name: events_default; Type: TABLE ATTACH; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.events ATTACH PARTITION tally.events_default DEFAULT;

--
-- Name: users users_email_key; Type: CONSTRAINT; Schema: auth; Owner: -
--

ALTER TABLE ONLY auth.users
    ADD CONSTRAINT users_email_key UNIQUE (email);

--
-- Name: users users_pkey; Type: CONSTRAINT; Schema: auth; Owner: -
--

ALTER TABLE ONLY auth.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (id);

--
-- Name: account_members account_members_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.account_members
    ADD CONSTRAINT account_members_pkey PRIMARY KEY (account_id, user_id);

--
-- Name: accounts accounts_external_id_key; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.accounts
    ADD CONSTRAINT accounts_external_id_key UNIQUE (external_id);

--
-- Name: accounts accounts_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.accounts
    ADD CONSTRAINT accounts_pkey PRIMARY KEY (id);

--
-- Name: api_key_secrets api_key_secrets_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.api_key_secrets
    ADD CONSTRAINT api_key_secrets_pkey PRIMARY KEY (account_id, api_key_id);

--
-- Name: api_keys api_keys_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (account_id, id);

--
-- Name: error_codes error_codes_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.error_codes
    ADD CONSTRAINT error_codes_pkey PRIMARY KEY (code);

--
-- Name: event_voids event_voids_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.event_voids
    ADD CONSTRAINT event_voids_pkey PRIMARY KEY (account_id, event_id);

--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (account_id, occurred_at, id);

--
-- Name: events_default events_default_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.events_default
    ADD CONSTRAINT events_default_pkey PRIMARY KEY (account_id, occurred_at, id);

--
-- Name: idempotency_keys idempotency_keys_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.idempotency_keys
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (account_id, idempotency_key);

--
-- Name: job_runs job_runs_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.job_runs
    ADD CONSTRAINT job_runs_pkey PRIMARY KEY (job);

--
-- Name: job_schedules job_schedules_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.job_schedules
    ADD CONSTRAINT job_schedules_pkey PRIMARY KEY (job);

--
-- Name: meters meters_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.meters
    ADD CONSTRAINT meters_pkey PRIMARY KEY (table_id);

--
-- Name: migrations migrations_name_key; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.migrations
    ADD CONSTRAINT migrations_name_key UNIQUE (name);

--
-- Name: migrations migrations_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.migrations
    ADD CONSTRAINT migrations_pkey PRIMARY KEY (id);

--
-- Name: model_prices model_prices_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.model_prices
    ADD CONSTRAINT model_prices_pkey PRIMARY KEY (provider, model, effective_from);

--
-- Name: rejected_events rejected_events_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.rejected_events
    ADD CONSTRAINT rejected_events_pkey PRIMARY KEY (id);

--
-- Name: rollup_state rollup_state_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.rollup_state
    ADD CONSTRAINT rollup_state_pkey PRIMARY KEY (id);

--
-- Name: settings settings_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (name);

--
-- Name: usage_daily_by_dimension usage_daily_by_dimension_key; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.usage_daily_by_dimension
    ADD CONSTRAINT usage_daily_by_dimension_key UNIQUE NULLS NOT DISTINCT (account_id, bucket, dimension, value);

--
-- Name: usage_daily usage_daily_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.usage_daily
    ADD CONSTRAINT usage_daily_pkey PRIMARY KEY (account_id, bucket, dim_key);

--
-- Name: usage_hourly usage_hourly_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.usage_hourly
    ADD CONSTRAINT usage_hourly_pkey PRIMARY KEY (account_id, bucket, dim_key);

--
-- Name: usage_hourly_totals usage_hourly_totals_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.usage_hourly_totals
    ADD CONSTRAINT usage_hourly_totals_pkey PRIMARY KEY (account_id, bucket);

--
-- Name: usage_monthly_by_dimension usage_monthly_by_dimension_key; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.usage_monthly_by_dimension
    ADD CONSTRAINT usage_monthly_by_dimension_key UNIQUE NULLS NOT DISTINCT (account_id, bucket, dimension, value);

--
-- Name: usage_monthly usage_monthly_pkey; Type: CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.usage_monthly
    ADD CONSTRAINT usage_monthly_pkey PRIMARY KEY (account_id, bucket, dim_key);

--
-- Name: account_members_user_id_idx; Type: INDEX; Schema: tally; Owner: -
--

CREATE INDEX account_members_user_id_idx ON tally.account_members USING btree (user_id, account_id);

--
-- Name: api_key_secrets_secret_hash_idx; Type: INDEX; Schema: tally; Owner: -
--

CREATE INDEX api_key_secrets_secret_hash_idx ON tally.api_key_secrets USING btree (secret_hash);

--
-- Name: api_keys_id_idx; Type: INDEX; Schema: tally; Owner: -
--

CREATE INDEX api_keys_id_idx ON tally.api_keys USING btree (id);

--
-- Name: events_account_id_id; Type: INDEX; Schema: tally; Owner: -
--

CREATE INDEX events_account_id_id ON ONLY tally.events USING btree (account_id, id);

--
-- Name: events_default_account_id_id_idx; Type: INDEX; Schema: tally; Owner: -
--

CREATE INDEX events_default_account_id_id_idx ON tally.events_default USING btree (account_id, id);

--
-- Name: events_id_brin; Type: INDEX; Schema: tally; Owner: -
--

CREATE INDEX events_id_brin ON ONLY tally.events USING brin (id) WITH (pages_per_range='32', autosummarize='on');

--
-- Name: events_default_id_idx; Type: INDEX; Schema: tally; Owner: -
--

CREATE INDEX events_default_id_idx ON tally.events_default USING brin (id) WITH (pages_per_range='32', autosummarize='on');

--
-- Name: idempotency_keys_created_brin; Type: INDEX; Schema: tally; Owner: -
--

CREATE INDEX idempotency_keys_created_brin ON tally.idempotency_keys USING brin (created_at) WITH (autosummarize='on');

--
-- Name: rejected_events_account_idx; Type: INDEX; Schema: tally; Owner: -
--

CREATE INDEX rejected_events_account_idx ON tally.rejected_events USING btree (account_id, received_at) WHERE (account_id IS NOT NULL);

--
-- Name: rejected_events_retry_key; Type: INDEX; Schema: tally; Owner: -
--

CREATE UNIQUE INDEX rejected_events_retry_key ON tally.rejected_events USING btree (source, account_id, idempotency_key) WHERE (idempotency_key IS NOT NULL);

--
-- Name: rejected_events_source_idx; Type: INDEX; Schema: tally; Owner: -
--

CREATE INDEX rejected_events_source_idx ON tally.rejected_events USING btree (source, item_index);

--
-- Name: usage_hourly_unpriced; Type: INDEX; Schema: tally; Owner: -
--

CREATE INDEX usage_hourly_unpriced ON tally.usage_hourly USING btree (bucket) WHERE (unpriced > 0);

--
-- Name: events_default_account_id_id_idx; Type: INDEX ATTACH; Schema: tally; Owner: -
--

ALTER INDEX tally.events_account_id_id ATTACH PARTITION tally.events_default_account_id_id_idx;

--
-- Name: events_default_id_idx; Type: INDEX ATTACH; Schema: tally; Owner: -
--

ALTER INDEX tally.events_id_brin ATTACH PARTITION tally.events_default_id_idx;

--
-- Name: events_default_pkey; Type: INDEX ATTACH; Schema: tally; Owner: -
--

ALTER INDEX tally.events_pkey ATTACH PARTITION tally.events_default_pkey;

--
-- Name: accounts lock_timezone; Type: TRIGGER; Schema: tally; Owner: -
--

CREATE TRIGGER lock_timezone BEFORE UPDATE OF timezone ON tally.accounts FOR EACH ROW EXECUTE FUNCTION tally.tg_accounts__lock_timezone();

--
-- Name: account_members account_members_account_id_fkey; Type: FK CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.account_members
    ADD CONSTRAINT account_members_account_id_fkey FOREIGN KEY (account_id) REFERENCES tally.accounts(id) ON DELETE CASCADE;

--
-- Name: account_members account_members_user_id_fkey; Type: FK CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.account_members
    ADD CONSTRAINT account_members_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: api_key_secrets api_key_secrets_account_id_fkey; Type: FK CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.api_key_secrets
    ADD CONSTRAINT api_key_secrets_account_id_fkey FOREIGN KEY (account_id) REFERENCES tally.accounts(id) ON DELETE CASCADE;

--
-- Name: api_keys api_keys_account_id_fkey; Type: FK CONSTRAINT; Schema: tally; Owner: -
--

ALTER TABLE ONLY tally.api_keys
    ADD CONSTRAINT api_keys_account_id_fkey FOREIGN KEY (account_id) REFERENCES tally.accounts(id) ON DELETE CASCADE;

--
-- Name: users; Type: ROW SECURITY; Schema: auth; Owner: -
--

ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY;

--
-- Name: account_members; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.account_members ENABLE ROW LEVEL SECURITY;

--
-- Name: account_members account_members_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY account_members_member_read ON tally.account_members FOR SELECT TO authenticated USING ((account_id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: account_members account_members_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY account_members_service_read ON tally.account_members FOR SELECT TO service_role USING (true);

--
-- Name: accounts; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.accounts ENABLE ROW LEVEL SECURITY;

--
-- Name: accounts accounts_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY accounts_member_read ON tally.accounts FOR SELECT TO authenticated USING ((id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: accounts accounts_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY accounts_service_read ON tally.accounts FOR SELECT TO service_role USING (true);

--
-- Name: api_key_secrets; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.api_key_secrets ENABLE ROW LEVEL SECURITY;

--
-- Name: api_keys; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.api_keys ENABLE ROW LEVEL SECURITY;

--
-- Name: api_keys api_keys_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY api_keys_member_read ON tally.api_keys FOR SELECT TO authenticated USING ((account_id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: api_keys api_keys_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY api_keys_service_read ON tally.api_keys FOR SELECT TO service_role USING (true);

--
-- Name: error_codes; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.error_codes ENABLE ROW LEVEL SECURITY;

--
-- Name: error_codes error_codes_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY error_codes_service_read ON tally.error_codes FOR SELECT TO service_role USING (true);

--
-- Name: event_voids; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.event_voids ENABLE ROW LEVEL SECURITY;

--
-- Name: event_voids event_voids_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY event_voids_member_read ON tally.event_voids FOR SELECT TO authenticated USING ((account_id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: event_voids event_voids_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY event_voids_service_read ON tally.event_voids FOR SELECT TO service_role USING (true);

--
-- Name: events; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.events ENABLE ROW LEVEL SECURITY;

--
-- Name: events_default; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.events_default ENABLE ROW LEVEL SECURITY;

--
-- Name: events events_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY events_member_read ON tally.events FOR SELECT TO authenticated USING ((account_id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: events events_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY events_service_read ON tally.events FOR SELECT TO service_role USING (true);

--
-- Name: idempotency_keys; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.idempotency_keys ENABLE ROW LEVEL SECURITY;

--
-- Name: idempotency_keys idempotency_keys_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY idempotency_keys_service_read ON tally.idempotency_keys FOR SELECT TO service_role USING (true);

--
-- Name: job_runs; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.job_runs ENABLE ROW LEVEL SECURITY;

--
-- Name: job_runs job_runs_service_role; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY job_runs_service_role ON tally.job_runs TO service_role USING (true) WITH CHECK (true);

--
-- Name: job_schedules; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.job_schedules ENABLE ROW LEVEL SECURITY;

--
-- Name: job_schedules job_schedules_service_role; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY job_schedules_service_role ON tally.job_schedules TO service_role USING (true) WITH CHECK (true);

--
-- Name: meters; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.meters ENABLE ROW LEVEL SECURITY;

--
-- Name: meters meters_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY meters_service_read ON tally.meters FOR SELECT TO service_role USING (true);

--
-- Name: migrations; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.migrations ENABLE ROW LEVEL SECURITY;

--
-- Name: model_prices; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.model_prices ENABLE ROW LEVEL SECURITY;

--
-- Name: model_prices model_prices_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY model_prices_read ON tally.model_prices FOR SELECT TO authenticated, service_role USING (true);

--
-- Name: rejected_events; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.rejected_events ENABLE ROW LEVEL SECURITY;

--
-- Name: rejected_events rejected_events_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY rejected_events_member_read ON tally.rejected_events FOR SELECT TO authenticated USING ((account_id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: rejected_events rejected_events_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY rejected_events_service_read ON tally.rejected_events FOR SELECT TO service_role USING (true);

--
-- Name: rollup_state; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.rollup_state ENABLE ROW LEVEL SECURITY;

--
-- Name: rollup_state rollup_state_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY rollup_state_service_read ON tally.rollup_state FOR SELECT TO service_role USING (true);

--
-- Name: settings; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.settings ENABLE ROW LEVEL SECURITY;

--
-- Name: settings settings_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY settings_service_read ON tally.settings FOR SELECT TO service_role USING (true);

--
-- Name: usage_daily; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.usage_daily ENABLE ROW LEVEL SECURITY;

--
-- Name: usage_daily_by_dimension; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.usage_daily_by_dimension ENABLE ROW LEVEL SECURITY;

--
-- Name: usage_daily_by_dimension usage_daily_by_dimension_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_daily_by_dimension_member_read ON tally.usage_daily_by_dimension FOR SELECT TO authenticated USING ((account_id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: usage_daily_by_dimension usage_daily_by_dimension_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_daily_by_dimension_service_read ON tally.usage_daily_by_dimension FOR SELECT TO service_role USING (true);

--
-- Name: usage_daily usage_daily_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_daily_member_read ON tally.usage_daily FOR SELECT TO authenticated USING ((account_id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: usage_daily usage_daily_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_daily_service_read ON tally.usage_daily FOR SELECT TO service_role USING (true);

--
-- Name: usage_hourly; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.usage_hourly ENABLE ROW LEVEL SECURITY;

--
-- Name: usage_hourly usage_hourly_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_hourly_member_read ON tally.usage_hourly FOR SELECT TO authenticated USING ((account_id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: usage_hourly usage_hourly_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_hourly_service_read ON tally.usage_hourly FOR SELECT TO service_role USING (true);

--
-- Name: usage_hourly_totals; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.usage_hourly_totals ENABLE ROW LEVEL SECURITY;

--
-- Name: usage_hourly_totals usage_hourly_totals_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_hourly_totals_member_read ON tally.usage_hourly_totals FOR SELECT TO authenticated USING ((account_id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: POLICY usage_hourly_totals_member_read ON usage_hourly_totals; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON POLICY usage_hourly_totals_member_read ON tally.usage_hourly_totals IS 'Members read the rows of their accounts.';

--
-- Name: usage_hourly_totals usage_hourly_totals_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_hourly_totals_service_read ON tally.usage_hourly_totals FOR SELECT TO service_role USING (true);

--
-- Name: POLICY usage_hourly_totals_service_read ON usage_hourly_totals; Type: COMMENT; Schema: tally; Owner: -
--

COMMENT ON POLICY usage_hourly_totals_service_read ON tally.usage_hourly_totals IS 'service_role reads every row.';

--
-- Name: usage_monthly; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.usage_monthly ENABLE ROW LEVEL SECURITY;

--
-- Name: usage_monthly_by_dimension; Type: ROW SECURITY; Schema: tally; Owner: -
--

ALTER TABLE tally.usage_monthly_by_dimension ENABLE ROW LEVEL SECURITY;

--
-- Name: usage_monthly_by_dimension usage_monthly_by_dimension_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_monthly_by_dimension_member_read ON tally.usage_monthly_by_dimension FOR SELECT TO authenticated USING ((account_id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: usage_monthly_by_dimension usage_monthly_by_dimension_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_monthly_by_dimension_service_read ON tally.usage_monthly_by_dimension FOR SELECT TO service_role USING (true);

--
-- Name: usage_monthly usage_monthly_member_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_monthly_member_read ON tally.usage_monthly FOR SELECT TO authenticated USING ((account_id = ANY (( SELECT tally._my_account_ids() AS _my_account_ids)::uuid[])));

--
-- Name: usage_monthly usage_monthly_service_read; Type: POLICY; Schema: tally; Owner: -
--

CREATE POLICY usage_monthly_service_read ON tally.usage_monthly FOR SELECT TO service_role USING (true);

--
-- Name: SCHEMA auth; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA auth TO anon;
GRANT USAGE ON SCHEMA auth TO authenticated;
GRANT USAGE ON SCHEMA auth TO service_role;

--
-- Name: SCHEMA tally; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA tally TO anon;
GRANT USAGE ON SCHEMA tally TO authenticated;
GRANT USAGE ON SCHEMA tally TO service_role;

--
-- Name: FUNCTION jwt(); Type: ACL; Schema: auth; Owner: -
--

GRANT ALL ON FUNCTION auth.jwt() TO anon;
GRANT ALL ON FUNCTION auth.jwt() TO authenticated;
GRANT ALL ON FUNCTION auth.jwt() TO service_role;

--
-- Name: FUNCTION role(); Type: ACL; Schema: auth; Owner: -
--

GRANT ALL ON FUNCTION auth.role() TO anon;
GRANT ALL ON FUNCTION auth.role() TO authenticated;
GRANT ALL ON FUNCTION auth.role() TO service_role;

--
-- Name: FUNCTION uid(); Type: ACL; Schema: auth; Owner: -
--

GRANT ALL ON FUNCTION auth.uid() TO anon;
GRANT ALL ON FUNCTION auth.uid() TO authenticated;
GRANT ALL ON FUNCTION auth.uid() TO service_role;

--
-- Name: FUNCTION _apply_rollup_metrics(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._apply_rollup_metrics() FROM PUBLIC;

--
-- Name: FUNCTION _backfill_rollup_metric(p_metric text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._backfill_rollup_metric(p_metric text) FROM PUBLIC;

--
-- Name: FUNCTION _caller_is_service(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._caller_is_service() FROM PUBLIC;

--
-- Name: FUNCTION _caller_role(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._caller_role() FROM PUBLIC;

--
-- Name: FUNCTION _check_account_fields(p_name text, p_external_id text, p_timezone text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._check_account_fields(p_name text, p_external_id text, p_timezone text) FROM PUBLIC;

--
-- Name: FUNCTION _check_batch(p_events jsonb); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._check_batch(p_events jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _check_day_range(p_from date, p_to date); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._check_day_range(p_from date, p_to date) FROM PUBLIC;

--
-- Name: FUNCTION _check_rollup_range(p_from timestamp with time zone, p_to timestamp with time zone, p_verb text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._check_rollup_range(p_from timestamp with time zone, p_to timestamp with time zone, p_verb text) FROM PUBLIC;

--
-- Name: FUNCTION _check_usage_filters(p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._check_usage_filters(p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) FROM PUBLIC;

--
-- Name: FUNCTION _create_events_partition(p_month timestamp with time zone); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._create_events_partition(p_month timestamp with time zone) FROM PUBLIC;

--
-- Name: FUNCTION _dim_key(p_api_key_id uuid, p_event_type text, p_provider text, p_model text, p_endpoint text, p_file_type text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._dim_key(p_api_key_id uuid, p_event_type text, p_provider text, p_model text, p_endpoint text, p_file_type text) FROM PUBLIC;
GRANT ALL ON FUNCTION tally._dim_key(p_api_key_id uuid, p_event_type text, p_provider text, p_model text, p_endpoint text, p_file_type text) TO authenticated;
GRANT ALL ON FUNCTION tally._dim_key(p_api_key_id uuid, p_event_type text, p_provider text, p_model text, p_endpoint text, p_file_type text) TO service_role;

--
-- Name: FUNCTION _dim_key_sql(p_alias text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._dim_key_sql(p_alias text) FROM PUBLIC;

--
-- Name: FUNCTION _events_writers(p_among text[]); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._events_writers(p_among text[]) FROM PUBLIC;

--
-- Name: FUNCTION _fold_rollups(p_source text, p_lo bigint, p_hi bigint, p_grains text[], p_range_accounts uuid[], p_range_from timestamp with time zone[], p_range_to timestamp with time zone[], p_range_buckets text[]); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._fold_rollups(p_source text, p_lo bigint, p_hi bigint, p_grains text[], p_range_accounts uuid[], p_range_from timestamp with time zone[], p_range_to timestamp with time zone[], p_range_buckets text[]) FROM PUBLIC;

--
-- Name: FUNCTION _hist_add(p_a bigint[], p_b bigint[]); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._hist_add(p_a bigint[], p_b bigint[]) FROM PUBLIC;
GRANT ALL ON FUNCTION tally._hist_add(p_a bigint[], p_b bigint[]) TO authenticated;
GRANT ALL ON FUNCTION tally._hist_add(p_a bigint[], p_b bigint[]) TO service_role;

--
-- Name: FUNCTION _hist_one(p_latency_ms integer); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._hist_one(p_latency_ms integer) FROM PUBLIC;
GRANT ALL ON FUNCTION tally._hist_one(p_latency_ms integer) TO authenticated;
GRANT ALL ON FUNCTION tally._hist_one(p_latency_ms integer) TO service_role;

--
-- Name: FUNCTION _hist_sfunc(p_state bigint[], p_bucket integer, p_count bigint); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._hist_sfunc(p_state bigint[], p_bucket integer, p_count bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION tally._hist_sfunc(p_state bigint[], p_bucket integer, p_count bigint) TO authenticated;
GRANT ALL ON FUNCTION tally._hist_sfunc(p_state bigint[], p_bucket integer, p_count bigint) TO service_role;

--
-- Name: FUNCTION _hist_slot_conditions(p_value text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._hist_slot_conditions(p_value text) FROM PUBLIC;

--
-- Name: FUNCTION _ingest(p_events jsonb, p_source text, p_index_base bigint); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._ingest(p_events jsonb, p_source text, p_index_base bigint) FROM PUBLIC;

--
-- Name: FUNCTION _is_iso_timestamptz(p_value text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._is_iso_timestamptz(p_value text) FROM PUBLIC;

--
-- Name: FUNCTION _is_real_day(p_value text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._is_real_day(p_value text) FROM PUBLIC;

--
-- Name: FUNCTION _is_uuid(p_value text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._is_uuid(p_value text) FROM PUBLIC;

--
-- Name: FUNCTION _is_valid_timezone(p_timezone text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._is_valid_timezone(p_timezone text) FROM PUBLIC;

--
-- Name: FUNCTION _jnum(p_value jsonb); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._jnum(p_value jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _latency_percentiles(p_hist bigint[], p_latency_max integer, OUT p50 numeric, OUT p95 numeric, OUT p99 numeric); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._latency_percentiles(p_hist bigint[], p_latency_max integer, OUT p50 numeric, OUT p95 numeric, OUT p99 numeric) FROM PUBLIC;

--
-- Name: FUNCTION _live_view_sql(p_grain text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._live_view_sql(p_grain text) FROM PUBLIC;

--
-- Name: FUNCTION _local_start(p_local timestamp without time zone, p_timezone text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._local_start(p_local timestamp without time zone, p_timezone text) FROM PUBLIC;

--
-- Name: FUNCTION _meter_field_accepts(p_field text, p_type regtype); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._meter_field_accepts(p_field text, p_type regtype) FROM PUBLIC;

--
-- Name: FUNCTION _my_account_ids(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._my_account_ids() FROM PUBLIC;
GRANT ALL ON FUNCTION tally._my_account_ids() TO authenticated;
GRANT ALL ON FUNCTION tally._my_account_ids() TO service_role;

--
-- Name: FUNCTION _normalize_setting(p_kind text, p_value text, p_min text, p_max text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._normalize_setting(p_kind text, p_value text, p_min text, p_max text) FROM PUBLIC;

--
-- Name: FUNCTION _parse_events(p_events jsonb, p_index_base bigint); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._parse_events(p_events jsonb, p_index_base bigint) FROM PUBLIC;

--
-- Name: FUNCTION _raise(p_code text, p_message text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._raise(p_code text, p_message text) FROM PUBLIC;

--
-- Name: FUNCTION _raise(p_code text, p_sqlstate text, p_message text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._raise(p_code text, p_sqlstate text, p_message text) FROM PUBLIC;

--
-- Name: FUNCTION _rebuild_rollups(p_grains text[], p_accounts uuid[], p_buckets text[]); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._rebuild_rollups(p_grains text[], p_accounts uuid[], p_buckets text[]) FROM PUBLIC;

--
-- Name: FUNCTION _reject_sqlstate(p_code text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._reject_sqlstate(p_code text) FROM PUBLIC;

--
-- Name: FUNCTION _require_account_role(p_account_id uuid, p_role text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._require_account_role(p_account_id uuid, p_role text) FROM PUBLIC;

--
-- Name: FUNCTION _require_read_committed(p_function text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._require_read_committed(p_function text) FROM PUBLIC;

--
-- Name: FUNCTION _require_usage_reader(p_account_id uuid, OUT timezone text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._require_usage_reader(p_account_id uuid, OUT timezone text) FROM PUBLIC;

--
-- Name: FUNCTION _retention_floor(p_kind text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._retention_floor(p_kind text) FROM PUBLIC;

--
-- Name: FUNCTION _role_rank(p_role text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._role_rank(p_role text) FROM PUBLIC;

--
-- Name: FUNCTION _rollup_dimensions(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._rollup_dimensions() FROM PUBLIC;

--
-- Name: FUNCTION _rollup_grains(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._rollup_grains() FROM PUBLIC;

--
-- Name: FUNCTION _rollup_metrics(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._rollup_metrics() FROM PUBLIC;

--
-- Name: FUNCTION _setting_int(p_name text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._setting_int(p_name text) FROM PUBLIC;

--
-- Name: FUNCTION _setting_interval(p_name text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._setting_interval(p_name text) FROM PUBLIC;

--
-- Name: FUNCTION _status_class_sql(p_alias text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._status_class_sql(p_alias text) FROM PUBLIC;

--
-- Name: FUNCTION _token_cost(p_tokens_in bigint, p_tokens_out bigint, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._token_cost(p_tokens_in bigint, p_tokens_out bigint, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric) FROM PUBLIC;

--
-- Name: FUNCTION _truncate_empty_default_partition(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._truncate_empty_default_partition() FROM PUBLIC;

--
-- Name: FUNCTION _usage_between(p_account_id uuid, p_lo timestamp with time zone[], p_hi timestamp with time zone[], p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._usage_between(p_account_id uuid, p_lo timestamp with time zone[], p_hi timestamp with time zone[], p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) FROM PUBLIC;

--
-- Name: FUNCTION _usage_by(p_account_id uuid, p_unit text, p_hours_lo timestamp with time zone[], p_hours_hi timestamp with time zone[], p_from_day date, p_to_day date, p_groups text[], p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[], p_split date); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._usage_by(p_account_id uuid, p_unit text, p_hours_lo timestamp with time zone[], p_hours_hi timestamp with time zone[], p_from_day date, p_to_day date, p_groups text[], p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[], p_split date) FROM PUBLIC;

--
-- Name: FUNCTION _usage_metrics_sql(p_alias text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._usage_metrics_sql(p_alias text) FROM PUBLIC;

--
-- Name: FUNCTION _usage_sql_parts(OUT stored text, OUT tail text, OUT outer_sums text, OUT columns text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._usage_sql_parts(OUT stored text, OUT tail text, OUT outer_sums text, OUT columns text) FROM PUBLIC;

--
-- Name: FUNCTION _usage_tail_sql_parts(OUT slots text, OUT first text, OUT first_columns text, OUT second text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._usage_tail_sql_parts(OUT slots text, OUT first text, OUT first_columns text, OUT second text) FROM PUBLIC;

--
-- Name: FUNCTION apply_retention(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.apply_retention() FROM PUBLIC;
GRANT ALL ON FUNCTION tally.apply_retention() TO service_role;

--
-- Name: FUNCTION attach_meter(p_table regclass, p_event_type text, p_mapping jsonb); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.attach_meter(p_table regclass, p_event_type text, p_mapping jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.attach_meter(p_table regclass, p_event_type text, p_mapping jsonb) TO service_role;

--
-- Name: FUNCTION compare_periods(p_account_id uuid, p_period text, p_at timestamp with time zone, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.compare_periods(p_account_id uuid, p_period text, p_at timestamp with time zone, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.compare_periods(p_account_id uuid, p_period text, p_at timestamp with time zone, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) TO authenticated;
GRANT ALL ON FUNCTION tally.compare_periods(p_account_id uuid, p_period text, p_at timestamp with time zone, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) TO service_role;

--
-- Name: TABLE accounts; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.accounts TO authenticated;
GRANT SELECT ON TABLE tally.accounts TO service_role;

--
-- Name: FUNCTION create_account(p_name text, p_external_id text, p_timezone text, p_owner_id uuid); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.create_account(p_name text, p_external_id text, p_timezone text, p_owner_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.create_account(p_name text, p_external_id text, p_timezone text, p_owner_id uuid) TO authenticated;
GRANT ALL ON FUNCTION tally.create_account(p_name text, p_external_id text, p_timezone text, p_owner_id uuid) TO service_role;

--
-- Name: FUNCTION create_api_key(p_account_id uuid, p_name text, p_expires_at timestamp with time zone); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.create_api_key(p_account_id uuid, p_name text, p_expires_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.create_api_key(p_account_id uuid, p_name text, p_expires_at timestamp with time zone) TO authenticated;
GRANT ALL ON FUNCTION tally.create_api_key(p_account_id uuid, p_name text, p_expires_at timestamp with time zone) TO service_role;

--
-- Name: FUNCTION detach_meter(p_table regclass); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.detach_meter(p_table regclass) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.detach_meter(p_table regclass) TO service_role;

--
-- Name: FUNCTION ensure_partitions(p_months_ahead integer); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.ensure_partitions(p_months_ahead integer) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.ensure_partitions(p_months_ahead integer) TO service_role;

--
-- Name: FUNCTION ensure_partitions_for(p_from timestamp with time zone, p_to timestamp with time zone); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.ensure_partitions_for(p_from timestamp with time zone, p_to timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.ensure_partitions_for(p_from timestamp with time zone, p_to timestamp with time zone) TO service_role;

--
-- Name: TABLE events; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.events TO authenticated;
GRANT SELECT ON TABLE tally.events TO service_role;

--
-- Name: FUNCTION events_tail(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.events_tail() FROM PUBLIC;
GRANT ALL ON FUNCTION tally.events_tail() TO authenticated;
GRANT ALL ON FUNCTION tally.events_tail() TO service_role;

--
-- Name: FUNCTION get_breakdown(p_account_id uuid, p_dimension text, p_from date, p_to date, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[], p_limit integer, p_measure text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.get_breakdown(p_account_id uuid, p_dimension text, p_from date, p_to date, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[], p_limit integer, p_measure text) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.get_breakdown(p_account_id uuid, p_dimension text, p_from date, p_to date, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[], p_limit integer, p_measure text) TO authenticated;
GRANT ALL ON FUNCTION tally.get_breakdown(p_account_id uuid, p_dimension text, p_from date, p_to date, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[], p_limit integer, p_measure text) TO service_role;

--
-- Name: FUNCTION get_dashboard_stats(p_account_id uuid, p_days integer); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.get_dashboard_stats(p_account_id uuid, p_days integer) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.get_dashboard_stats(p_account_id uuid, p_days integer) TO authenticated;
GRANT ALL ON FUNCTION tally.get_dashboard_stats(p_account_id uuid, p_days integer) TO service_role;

--
-- Name: FUNCTION get_period_summary(p_account_id uuid, p_month date); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.get_period_summary(p_account_id uuid, p_month date) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.get_period_summary(p_account_id uuid, p_month date) TO authenticated;
GRANT ALL ON FUNCTION tally.get_period_summary(p_account_id uuid, p_month date) TO service_role;

--
-- Name: FUNCTION get_top_endpoints(p_account_id uuid, p_from date, p_to date, p_limit integer, p_order_by text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.get_top_endpoints(p_account_id uuid, p_from date, p_to date, p_limit integer, p_order_by text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.get_top_endpoints(p_account_id uuid, p_from date, p_to date, p_limit integer, p_order_by text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) TO authenticated;
GRANT ALL ON FUNCTION tally.get_top_endpoints(p_account_id uuid, p_from date, p_to date, p_limit integer, p_order_by text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) TO service_role;

--
-- Name: FUNCTION get_usage_history(p_account_id uuid, p_months integer); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.get_usage_history(p_account_id uuid, p_months integer) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.get_usage_history(p_account_id uuid, p_months integer) TO authenticated;
GRANT ALL ON FUNCTION tally.get_usage_history(p_account_id uuid, p_months integer) TO service_role;

--
-- Name: FUNCTION get_usage_series(p_account_id uuid, p_from timestamp with time zone, p_to timestamp with time zone, p_granularity text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.get_usage_series(p_account_id uuid, p_from timestamp with time zone, p_to timestamp with time zone, p_granularity text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.get_usage_series(p_account_id uuid, p_from timestamp with time zone, p_to timestamp with time zone, p_granularity text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) TO authenticated;
GRANT ALL ON FUNCTION tally.get_usage_series(p_account_id uuid, p_from timestamp with time zone, p_to timestamp with time zone, p_granularity text, p_api_key_ids uuid[], p_event_types text[], p_providers text[], p_models text[], p_endpoints text[], p_file_types text[]) TO service_role;

--
-- Name: FUNCTION has_role_on_account(p_account_id uuid, p_role text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.has_role_on_account(p_account_id uuid, p_role text) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.has_role_on_account(p_account_id uuid, p_role text) TO authenticated;
GRANT ALL ON FUNCTION tally.has_role_on_account(p_account_id uuid, p_role text) TO service_role;

--
-- Name: FUNCTION heartbeat(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.heartbeat() FROM PUBLIC;
GRANT ALL ON FUNCTION tally.heartbeat() TO service_role;

--
-- Name: FUNCTION histogram_percentile(p_hist bigint[], p_fraction numeric, p_latency_max integer); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.histogram_percentile(p_hist bigint[], p_fraction numeric, p_latency_max integer) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.histogram_percentile(p_hist bigint[], p_fraction numeric, p_latency_max integer) TO authenticated;
GRANT ALL ON FUNCTION tally.histogram_percentile(p_hist bigint[], p_fraction numeric, p_latency_max integer) TO service_role;

--
-- Name: FUNCTION import_events(p_events jsonb, p_source text, p_first_index bigint); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.import_events(p_events jsonb, p_source text, p_first_index bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.import_events(p_events jsonb, p_source text, p_first_index bigint) TO service_role;

--
-- Name: FUNCTION latency_buckets(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.latency_buckets() FROM PUBLIC;
GRANT ALL ON FUNCTION tally.latency_buckets() TO authenticated;
GRANT ALL ON FUNCTION tally.latency_buckets() TO service_role;

--
-- Name: FUNCTION pending_events_estimate(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.pending_events_estimate() FROM PUBLIC;
GRANT ALL ON FUNCTION tally.pending_events_estimate() TO service_role;

--
-- Name: FUNCTION purge_idempotency_keys(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.purge_idempotency_keys() FROM PUBLIC;
GRANT ALL ON FUNCTION tally.purge_idempotency_keys() TO service_role;

--
-- Name: FUNCTION recompute_rollups(p_from timestamp with time zone, p_to timestamp with time zone); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.recompute_rollups(p_from timestamp with time zone, p_to timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.recompute_rollups(p_from timestamp with time zone, p_to timestamp with time zone) TO service_role;

--
-- Name: FUNCTION record_event(p_event jsonb); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.record_event(p_event jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.record_event(p_event jsonb) TO service_role;

--
-- Name: FUNCTION record_events(p_events jsonb); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.record_events(p_events jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.record_events(p_events jsonb) TO service_role;

--
-- Name: FUNCTION record_job_run(p_job text, p_started_at timestamp with time zone, p_finished_at timestamp with time zone, p_ok boolean, p_result jsonb, p_error text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.record_job_run(p_job text, p_started_at timestamp with time zone, p_finished_at timestamp with time zone, p_ok boolean, p_result jsonb, p_error text) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.record_job_run(p_job text, p_started_at timestamp with time zone, p_finished_at timestamp with time zone, p_ok boolean, p_result jsonb, p_error text) TO service_role;

--
-- Name: FUNCTION remove_account_member(p_account_id uuid, p_user_id uuid); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.remove_account_member(p_account_id uuid, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.remove_account_member(p_account_id uuid, p_user_id uuid) TO authenticated;
GRANT ALL ON FUNCTION tally.remove_account_member(p_account_id uuid, p_user_id uuid) TO service_role;

--
-- Name: FUNCTION reprice(p_from timestamp with time zone, p_to timestamp with time zone); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.reprice(p_from timestamp with time zone, p_to timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.reprice(p_from timestamp with time zone, p_to timestamp with time zone) TO service_role;

--
-- Name: FUNCTION revoke_api_key(p_id uuid); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.revoke_api_key(p_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.revoke_api_key(p_id uuid) TO authenticated;
GRANT ALL ON FUNCTION tally.revoke_api_key(p_id uuid) TO service_role;

--
-- Name: FUNCTION rollup_status(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.rollup_status() FROM PUBLIC;
GRANT ALL ON FUNCTION tally.rollup_status() TO service_role;

--
-- Name: FUNCTION rollup_watermark(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.rollup_watermark() FROM PUBLIC;
GRANT ALL ON FUNCTION tally.rollup_watermark() TO service_role;

--
-- Name: FUNCTION run_rollups(p_max_events bigint); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.run_rollups(p_max_events bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.run_rollups(p_max_events bigint) TO service_role;

--
-- Name: FUNCTION schema_version(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.schema_version() FROM PUBLIC;
GRANT ALL ON FUNCTION tally.schema_version() TO service_role;

--
-- Name: TABLE account_members; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.account_members TO authenticated;
GRANT SELECT ON TABLE tally.account_members TO service_role;

--
-- Name: FUNCTION set_account_member(p_account_id uuid, p_user_id uuid, p_role text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.set_account_member(p_account_id uuid, p_user_id uuid, p_role text) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.set_account_member(p_account_id uuid, p_user_id uuid, p_role text) TO authenticated;
GRANT ALL ON FUNCTION tally.set_account_member(p_account_id uuid, p_user_id uuid, p_role text) TO service_role;

--
-- Name: TABLE job_schedules; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE tally.job_schedules TO service_role;

--
-- Name: FUNCTION set_job_schedule(p_job text, p_cron text, p_enabled boolean); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.set_job_schedule(p_job text, p_cron text, p_enabled boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.set_job_schedule(p_job text, p_cron text, p_enabled boolean) TO service_role;

--
-- Name: TABLE model_prices; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.model_prices TO authenticated;
GRANT SELECT ON TABLE tally.model_prices TO service_role;

--
-- Name: FUNCTION set_model_price(p_provider text, p_model text, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric, p_effective_from timestamp with time zone); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.set_model_price(p_provider text, p_model text, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric, p_effective_from timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.set_model_price(p_provider text, p_model text, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric, p_effective_from timestamp with time zone) TO service_role;

--
-- Name: TABLE settings; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.settings TO service_role;

--
-- Name: FUNCTION set_setting(p_name text, p_value text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.set_setting(p_name text, p_value text) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.set_setting(p_name text, p_value text) TO service_role;

--
-- Name: FUNCTION tg_accounts__lock_timezone(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.tg_accounts__lock_timezone() FROM PUBLIC;

--
-- Name: FUNCTION tg_meter__insert(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.tg_meter__insert() FROM PUBLIC;

--
-- Name: FUNCTION unpriced_models(p_window interval); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.unpriced_models(p_window interval) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.unpriced_models(p_window interval) TO service_role;

--
-- Name: FUNCTION update_account(p_account_id uuid, p_name text, p_external_id text, p_timezone text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.update_account(p_account_id uuid, p_name text, p_external_id text, p_timezone text) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.update_account(p_account_id uuid, p_name text, p_external_id text, p_timezone text) TO authenticated;
GRANT ALL ON FUNCTION tally.update_account(p_account_id uuid, p_name text, p_external_id text, p_timezone text) TO service_role;

--
-- Name: FUNCTION verify_api_key(p_secret text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.verify_api_key(p_secret text) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.verify_api_key(p_secret text) TO service_role;

--
-- Name: FUNCTION verify_previous_day(); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.verify_previous_day() FROM PUBLIC;
GRANT ALL ON FUNCTION tally.verify_previous_day() TO service_role;

--
-- Name: FUNCTION verify_rollups(p_from timestamp with time zone, p_to timestamp with time zone); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.verify_rollups(p_from timestamp with time zone, p_to timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.verify_rollups(p_from timestamp with time zone, p_to timestamp with time zone) TO service_role;

--
-- Name: FUNCTION void_events(p_event_ids bigint[], p_reason text); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally.void_events(p_event_ids bigint[], p_reason text) FROM PUBLIC;
GRANT ALL ON FUNCTION tally.void_events(p_event_ids bigint[], p_reason text) TO service_role;

--
-- Name: FUNCTION _hist_agg(integer, bigint); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._hist_agg(integer, bigint) FROM PUBLIC;

--
-- Name: FUNCTION _hist_sum(bigint[]); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._hist_sum(bigint[]) FROM PUBLIC;
GRANT ALL ON FUNCTION tally._hist_sum(bigint[]) TO authenticated;
GRANT ALL ON FUNCTION tally._hist_sum(bigint[]) TO service_role;

--
-- Name: FUNCTION _sum8(bigint); Type: ACL; Schema: tally; Owner: -
--

REVOKE ALL ON FUNCTION tally._sum8(bigint) FROM PUBLIC;

--
-- Name: TABLE api_keys; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.api_keys TO authenticated;
GRANT SELECT ON TABLE tally.api_keys TO service_role;

--
-- Name: TABLE error_codes; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.error_codes TO service_role;

--
-- Name: TABLE event_voids; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.event_voids TO authenticated;
GRANT SELECT ON TABLE tally.event_voids TO service_role;

--
-- Name: TABLE idempotency_keys; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.idempotency_keys TO service_role;

--
-- Name: TABLE job_runs; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.job_runs TO service_role;

--
-- Name: TABLE meters; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.meters TO service_role;

--
-- Name: TABLE rejected_events; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.rejected_events TO authenticated;
GRANT SELECT ON TABLE tally.rejected_events TO service_role;

--
-- Name: TABLE rollup_state; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.rollup_state TO service_role;

--
-- Name: TABLE usage_daily; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.usage_daily TO authenticated;
GRANT SELECT ON TABLE tally.usage_daily TO service_role;

--
-- Name: TABLE usage_daily_by_dimension; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.usage_daily_by_dimension TO authenticated;
GRANT SELECT ON TABLE tally.usage_daily_by_dimension TO service_role;

--
-- Name: TABLE usage_daily_live; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.usage_daily_live TO authenticated;
GRANT SELECT ON TABLE tally.usage_daily_live TO service_role;

--
-- Name: TABLE usage_hourly; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.usage_hourly TO authenticated;
GRANT SELECT ON TABLE tally.usage_hourly TO service_role;

--
-- Name: TABLE usage_hourly_live; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.usage_hourly_live TO authenticated;
GRANT SELECT ON TABLE tally.usage_hourly_live TO service_role;

--
-- Name: TABLE usage_hourly_totals; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.usage_hourly_totals TO authenticated;
GRANT SELECT ON TABLE tally.usage_hourly_totals TO service_role;

--
-- Name: TABLE usage_monthly; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.usage_monthly TO authenticated;
GRANT SELECT ON TABLE tally.usage_monthly TO service_role;

--
-- Name: TABLE usage_monthly_by_dimension; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.usage_monthly_by_dimension TO authenticated;
GRANT SELECT ON TABLE tally.usage_monthly_by_dimension TO service_role;

--
-- Name: TABLE usage_monthly_live; Type: ACL; Schema: tally; Owner: -
--

GRANT SELECT ON TABLE tally.usage_monthly_live TO authenticated;
GRANT SELECT ON TABLE tally.usage_monthly_live TO service_role;

--
-- PostgreSQL database dump complete
--
