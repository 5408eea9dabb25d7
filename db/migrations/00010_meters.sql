-- Meters: record events from inserts into the app's own tables, with no code change.
--
-- tally.attach_meter installs a statement-level AFTER INSERT trigger with a transition
-- table on the app's table. Once per INSERT statement it maps the new rows to events with
-- one generated SELECT and ingests them through the same validator as record_events, in
-- the app's transaction: the business row and its event commit or roll back together,
-- exactly once. Rows the mapping cannot turn into a valid event go to
-- tally.rejected_events (source 'meter:<table>'); the app's insert never fails for them.
--
-- The mapping is checked when it is attached (every column exists, with a type that fits
-- its field, and the caller may read it and put triggers on the table), so a typo fails
-- there rather than at the first insert. The generated SELECT is built only from those
-- checked column names, quoted with format('%I'). If a mapped column is later renamed or
-- dropped, the rows of each insert are dead-lettered whole (code meter_mapping_broken)
-- instead of failing the app's insert, until the meter is attached again.

-- Keyed by regclass, not oid: pg_dump writes a regclass as the table's name, so a meter
-- survives a dump and restore (where every OID changes) and follows a renamed table.
CREATE TABLE tally.meters (
  table_id    regclass PRIMARY KEY,
  table_name  text NOT NULL,
  event_type  text NOT NULL,
  mapping     jsonb NOT NULL,
  select_sql  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tally.meters IS
  'Tables metered by tally.attach_meter: the event type, the column mapping as given, and the SELECT generated from it that turns a statement''s new rows into events, in chunks.';

ALTER TABLE tally.meters ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.meters FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.meters TO service_role;
CREATE POLICY meters_service_read ON tally.meters FOR SELECT TO service_role USING (true);

-- Which PostgreSQL types each event field accepts from a column.
CREATE FUNCTION tally._meter_field_accepts(p_field text, p_type regtype) RETURNS boolean
  LANGUAGE sql STABLE
  SET search_path = ''
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
COMMENT ON FUNCTION tally._meter_field_accepts(text, regtype) IS
  'True when a column of type p_type may feed event field p_field: uuid or text for tenants, timestamptz for occurred_at (a timestamp without time zone is ambiguous), exact numbers for counts and money, boolean, jsonb for properties (a json value may hold \u0000, which no event can).';
REVOKE ALL ON FUNCTION tally._meter_field_accepts(text, regtype) FROM PUBLIC, anon, authenticated, service_role;

-- The trigger: one call per INSERT statement, whatever its number of rows.
CREATE FUNCTION tally.tg_meter__insert() RETURNS trigger
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  SET jit = off
  SET TimeZone = 'UTC'
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
COMMENT ON FUNCTION tally.tg_meter__insert() IS
  'Statement-level AFTER INSERT trigger installed by tally.attach_meter: turns the statement''s new rows (transition table tally_new_rows) into events with the meter''s generated SELECT and ingests them in chunks; invalid rows go to tally.rejected_events, and so do whole statements whose mapping broke after attach (meter_mapping_broken).';
REVOKE ALL ON FUNCTION tally.tg_meter__insert() FROM PUBLIC, anon, authenticated, service_role;

-- The effective caller, as tally._caller_is_service() sees it: the role set with SET ROLE,
-- else the login role.
CREATE FUNCTION tally._caller_role() RETURNS name
  LANGUAGE sql STABLE
  SET search_path = ''
  AS $$
    select case when pg_catalog.current_setting('role') = 'none' then session_user
                else pg_catalog.current_setting('role')::name end
  $$;
COMMENT ON FUNCTION tally._caller_role() IS 'The effective caller of a SECURITY DEFINER function: the role set with SET ROLE, else the login role.';
REVOKE ALL ON FUNCTION tally._caller_role() FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.attach_meter(p_table regclass, p_event_type text, p_mapping jsonb) RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  SET jit = off
  AS $$
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
$$;
COMMENT ON FUNCTION tally.attach_meter(regclass, text, jsonb) IS
  'Meters inserts into an app table: every row inserted through it becomes an event of type p_event_type, in the same transaction (rows inserted directly into one of its partitions are not metered). p_mapping maps event fields to the table''s columns ("bytes": "size_bytes") or constants ("provider": {"value": "s3"}); account_id or api_key_id is required. Checked now: unknown fields, missing columns, ill-typed columns and refused constants raise invalid_mapping (22023); the caller needs TRIGGER on the table and SELECT on the mapped columns (forbidden, 42501). Attaching again replaces the mapping. Service callers only.';
REVOKE ALL ON FUNCTION tally.attach_meter(regclass, text, jsonb) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.attach_meter(regclass, text, jsonb) TO service_role;

CREATE FUNCTION tally.detach_meter(p_table regclass) RETURNS boolean
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
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
COMMENT ON FUNCTION tally.detach_meter(regclass) IS
  'Stops metering a table: drops its trigger and mapping. Returns false when it was not metered. Events already recorded stay. Service callers only.';
REVOKE ALL ON FUNCTION tally.detach_meter(regclass) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.detach_meter(regclass) TO service_role;
