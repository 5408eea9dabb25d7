-- Every function pins its search_path, SECURITY INVOKER helpers included.
--
-- Supabase's Database Advisor (lint function_search_path_mutable) flags any function in a
-- user schema whose search_path is not pinned; on an installed Tally it listed the
-- SECURITY INVOKER helpers, which ran with the caller's search_path. Their bodies are fully
-- schema-qualified, so pinning changes no result, but a `language sql` function with a SET
-- clause is no longer inlined into its caller: bench/suites/search-path.ts measures the hot
-- paths with and without the pin, side by side.
--
-- What the pin would have cost is won back where it was measured (bench/README.md):
--   * tally._parse_events, the validator behind every ingest path, becomes plpgsql (its one
--     statement is planned once per session, as when it was inlined into tally._ingest),
--     with the expressions of _jnum, _is_uuid, _is_iso_timestamptz, _is_real_day and
--     _token_cost written in place: a pinned helper is a real call per event and field;
--   * the per-row helpers that stay calls elsewhere (reprice, verify, the live views, the
--     meters) become plpgsql, which runs a pinned call about twice as fast as SQL does;
--     _hist_add (the step of _hist_sum, never inlined) becomes a loop, faster than before.
--   Their results are unchanged; the ingest and rollup tests check them.
--
-- Pinned here: every function and procedure in schema tally that has no search_path yet,
-- and the functions of the auth shim that Tally created on plain PostgreSQL (recognised by
-- their comment; Supabase's own are never touched). Aggregates cannot carry a SET clause
-- (there is no ALTER AGGREGATE ... SET): their support functions are pinned instead, and
-- the security tests list the aggregates as reviewed exceptions. Functions added later
-- declare SET search_path = pg_catalog, pg_temp themselves; the security tests check them.

-- ---------------------------------------------------------------------------------------
-- Per-row helpers as plpgsql (same signatures and results as before)
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION tally._jnum(p_value jsonb) RETURNS numeric
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  RETURN CASE pg_catalog.jsonb_typeof(p_value)
    WHEN 'number' THEN p_value::numeric
    WHEN 'string' THEN CASE WHEN (p_value #>> '{}') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$'
                            THEN (p_value #>> '{}')::numeric END
  END;
END
$$;

CREATE OR REPLACE FUNCTION tally._is_uuid(p_value text) RETURNS boolean
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  RETURN length(p_value) = 36 AND p_value ~ '^[0-9a-fA-F-]+$'
     AND substr(p_value, 9, 1) = '-' AND substr(p_value, 14, 1) = '-'
     AND substr(p_value, 19, 1) = '-' AND substr(p_value, 24, 1) = '-'
     AND length(replace(p_value, '-', '')) = 32;
END
$$;

CREATE OR REPLACE FUNCTION tally._is_real_day(p_value text) RETURNS boolean
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  RETURN substr(p_value, 9, 2) <= '28' COLLATE "C"
      OR substr(p_value, 9, 2)::int <= extract(day from pg_catalog.make_date(substr(p_value, 1, 4)::int, substr(p_value, 6, 2)::int, 1) + interval '1 month - 1 day');
END
$$;

CREATE OR REPLACE FUNCTION tally._is_iso_timestamptz(p_value text) RETURNS boolean
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
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
$$;

CREATE OR REPLACE FUNCTION tally._token_cost(p_tokens_in bigint, p_tokens_out bigint, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric)
  RETURNS numeric
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  RETURN round((coalesce(p_tokens_in, 0) * p_input_usd_per_mtok + coalesce(p_tokens_out, 0) * p_output_usd_per_mtok) / 1000000, 12);
END
$$;

CREATE OR REPLACE FUNCTION tally._dim_key(p_api_key_id uuid, p_event_type text, p_provider text, p_model text, p_endpoint text, p_file_type text)
  RETURNS uuid
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
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

-- The step of tally._hist_sum: a loop over the 42 slots instead of a subquery per row.
CREATE OR REPLACE FUNCTION tally._hist_add(p_a bigint[], p_b bigint[]) RETURNS bigint[]
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
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

-- One event's histogram, without the two nested calls (to _hist_sfunc and latency_buckets).
CREATE OR REPLACE FUNCTION tally._hist_one(p_latency_ms integer) RETURNS bigint[]
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
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

-- _usage_metrics built the metrics object verify_rollups reported before the metric list
-- generated it; nothing calls it any more, so it is dropped rather than pinned.
DROP FUNCTION tally._usage_metrics(bigint, bigint, bigint, bigint, numeric, numeric, numeric, numeric, numeric, numeric,
  numeric, bigint, numeric, integer, bigint[]);

-- ---------------------------------------------------------------------------------------
-- The validator: plpgsql, the helpers' expressions written in place (same result as before)
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION tally._parse_events(p_events jsonb, p_index_base bigint DEFAULT 0)
  RETURNS TABLE (
    item_index bigint, payload jsonb, code text, message text, known_account_id uuid,
    account_id uuid, occurred_at timestamptz, api_key_id uuid, event_type text, provider text,
    model text, endpoint text, method text, status_code smallint, success boolean,
    error_message text, file_type text, files bigint, bytes bigint, tokens_in bigint,
    tokens_out bigint, cached boolean, cost_usd numeric, potential_cost_usd numeric,
    cost_given boolean, potential_cost_given boolean, latency_ms integer, quantity numeric,
    idempotency_key text, properties jsonb)
  LANGUAGE plpgsql STABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
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
$$;

COMMENT ON FUNCTION tally._parse_events(jsonb, bigint) IS
  'Validates a JSON array of events without raising: one row per item with its index (p_index_base + position), the item as sent, and either code + message or the typed event (tenant resolved, success derived, cost priced from tally.model_prices). plpgsql, so its statement is planned once per session.';
REVOKE ALL ON FUNCTION tally._parse_events(jsonb, bigint) FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- Everything else: pinned as it is
-- ---------------------------------------------------------------------------------------
DO $$
DECLARE
  v_fn regprocedure;
BEGIN
  FOR v_fn IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
    WHERE p.prokind IN ('f', 'p', 'w')
      AND (p.pronamespace = 'tally'::regnamespace
           OR (p.pronamespace = 'auth'::regnamespace
               AND pg_catalog.obj_description(p.oid, 'pg_proc') LIKE '%(request.jwt.claims), as Supabase defines it.'))
      AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')
  LOOP
    EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', v_fn);
  END LOOP;
END
$$;
