-- Ingestion: validate a JSON array of events set-based, store the valid ones once (by
-- idempotency key), and keep every refused item in tally.rejected_events.
--
-- One validator (tally._parse_events) serves every path: tally.record_events (batches from
-- apps and the UsageTracker), tally.record_event (one event, raising on bad input),
-- tally.import_events (the `tally import` CLI) and attached meters. Each item gets the
-- first problem found, in field order, as a stable code and a message naming the field:
--
--   invalid_event     the item is not a JSON object
--   unknown_field     a field Tally does not know (a typo such as "token_in")
--   invalid_type      wrong JSON type (e.g. a string where a number belongs)
--   invalid_value     right type, wrong shape (timestamp, uuid, slug, MIME type, empty string)
--   out_of_range      a negative or too large number, a status code outside 100-599
--   too_long          a string longer than its field allows
--   too_large         properties larger than the setting ingest.properties_max_bytes
--   missing_field     event_type is absent
--   missing_tenant    neither account_id nor api_key_id
--   future_timestamp  occurred_at later than now() + ingest.max_future_skew
--   account_not_found, unknown_api_key, revoked_api_key, expired_api_key, account_mismatch

-- A JSON number, or a string holding a plain decimal (as CSV and lossless money arrive),
-- as numeric; NULL for anything else. Inlinable: no SET clause, plain SQL. Character
-- classes are spelled out in ASCII ([0-9], [ \t\r\n]) throughout the validator: \d and \s
-- also match non-ASCII digits and spaces (under ICU or Unicode locales), which the casts
-- refuse, and one refused cast would abort the whole batch.
CREATE FUNCTION tally._jnum(p_value jsonb) RETURNS numeric
  LANGUAGE sql IMMUTABLE
  AS $$
    select case pg_catalog.jsonb_typeof(p_value)
      when 'number' then p_value::numeric
      when 'string' then case when (p_value #>> '{}') ~ '^[ \t\r\n]*-?[0-9]{1,30}(\.[0-9]{1,30})?[ \t\r\n]*$'
                              then (p_value #>> '{}')::numeric end
    end
  $$;
COMMENT ON FUNCTION tally._jnum(jsonb) IS
  'A JSON number, or a string holding a plain decimal such as "0.0012", as numeric; NULL for any other JSON value.';
REVOKE ALL ON FUNCTION tally._jnum(jsonb) FROM PUBLIC, anon, authenticated, service_role;

-- True for a UUID in its canonical 8-4-4-4-12 form, which the uuid cast accepts without
-- error. Cheaper than one anchored regex with counted groups, which matters per event.
CREATE FUNCTION tally._is_uuid(p_value text) RETURNS boolean
  LANGUAGE sql IMMUTABLE
  AS $$
    select length(p_value) = 36 and p_value ~ '^[0-9a-fA-F-]+$'
       and substr(p_value, 9, 1) = '-' and substr(p_value, 14, 1) = '-'
       and substr(p_value, 19, 1) = '-' and substr(p_value, 24, 1) = '-'
       and length(replace(p_value, '-', '')) = 32
  $$;
COMMENT ON FUNCTION tally._is_uuid(text) IS 'True for a canonical UUID string (8-4-4-4-12 hexadecimal digits).';
REVOKE ALL ON FUNCTION tally._is_uuid(text) FROM PUBLIC, anon, authenticated, service_role;

-- True when the yyyy-mm-dd at the start of p_value is a day of the calendar (the 31st of
-- a 30-day month is not). Only computed for days after the 28th.
CREATE FUNCTION tally._is_real_day(p_value text) RETURNS boolean
  LANGUAGE sql IMMUTABLE
  AS $$
    select substr(p_value, 9, 2) <= '28' COLLATE "C"
        or substr(p_value, 9, 2)::int <= extract(day from pg_catalog.make_date(substr(p_value, 1, 4)::int, substr(p_value, 6, 2)::int, 1) + interval '1 month - 1 day')
  $$;
COMMENT ON FUNCTION tally._is_real_day(text) IS 'True when the yyyy-mm-dd prefix of p_value (already shape-checked) names a real calendar day.';
REVOKE ALL ON FUNCTION tally._is_real_day(text) FROM PUBLIC, anon, authenticated, service_role;

-- True for an ISO 8601 timestamp with an explicit offset (Z or +hh[:mm]) from 1970 on, that
-- PostgreSQL can cast without error. A zone-less timestamp is refused: it would be read in
-- the session's time zone, which the sender cannot see.
CREATE FUNCTION tally._is_iso_timestamptz(p_value text) RETURNS boolean
  LANGUAGE sql IMMUTABLE
  AS $$
    select case
      -- the shape; then each field's range by comparing fixed-width digit strings (in the
      -- C collation: byte order, no locale), which costs far less per event than one regex
      -- with a range per field
      when length(p_value) > 40
        or p_value !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$' then false
      when substr(p_value, 1, 4) < '1970' COLLATE "C" or substr(p_value, 6, 2) not between ('01' COLLATE "C") and ('12' COLLATE "C")
        or substr(p_value, 9, 2) not between ('01' COLLATE "C") and ('31' COLLATE "C") or substr(p_value, 12, 2) > '23' COLLATE "C"
        or substr(p_value, 15, 2) > '59' COLLATE "C" or (substr(p_value, 17, 1) = ':' and substr(p_value, 18, 2) > '59' COLLATE "C") then false
      -- the UTC offset: +hh:mm, +hhmm or +hh, hours to 15 and minutes to 59
      when substr(right(p_value, 6), 1, 1) in ('+', '-') and substr(right(p_value, 6), 4, 1) = ':'
        then substr(right(p_value, 5), 1, 2) <= '15' COLLATE "C" and right(p_value, 2) <= '59' COLLATE "C" and tally._is_real_day(p_value)
      when substr(right(p_value, 5), 1, 1) in ('+', '-')
        then substr(right(p_value, 4), 1, 2) <= '15' COLLATE "C" and right(p_value, 2) <= '59' COLLATE "C" and tally._is_real_day(p_value)
      when substr(right(p_value, 3), 1, 1) in ('+', '-')
        then right(p_value, 2) <= '15' COLLATE "C" and tally._is_real_day(p_value)
      else tally._is_real_day(p_value)
    end
  $$;
COMMENT ON FUNCTION tally._is_iso_timestamptz(text) IS
  'True for an ISO 8601 timestamp with an explicit UTC offset (2026-11-22T10:00:00Z, 2026-11-22 10:00:00.123+05:30), year 1970 or later, that names a real calendar day.';
REVOKE ALL ON FUNCTION tally._is_iso_timestamptz(text) FROM PUBLIC, anon, authenticated, service_role;

-- The validator. Returns one row per array item: its index, the item as sent, and either a
-- (code, message) or the typed, priced event. No exceptions are raised for bad items: every
-- cast is guarded by the check that makes it safe.
CREATE FUNCTION tally._parse_events(p_events jsonb, p_index_base bigint DEFAULT 0)
  RETURNS TABLE (
    item_index bigint, payload jsonb, code text, message text, known_account_id uuid,
    account_id uuid, occurred_at timestamptz, api_key_id uuid, event_type text, provider text,
    model text, endpoint text, method text, status_code smallint, success boolean,
    error_message text, file_type text, files bigint, bytes bigint, tokens_in bigint,
    tokens_out bigint, cached boolean, cost_usd numeric, potential_cost_usd numeric,
    cost_given boolean, potential_cost_given boolean, latency_ms integer, quantity numeric,
    idempotency_key text, properties jsonb)
  LANGUAGE sql STABLE
  AS $$
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
           tally._jnum(t.e->'status_code') AS n_status_code, tally._jnum(t.e->'files') AS n_files,
           tally._jnum(t.e->'bytes') AS n_bytes, tally._jnum(t.e->'tokens_in') AS n_tokens_in,
           tally._jnum(t.e->'tokens_out') AS n_tokens_out, tally._jnum(t.e->'cost_usd') AS n_cost_usd,
           tally._jnum(t.e->'potential_cost_usd') AS n_potential_cost_usd, tally._jnum(t.e->'latency_ms') AS n_latency_ms,
           tally._jnum(t.e->'quantity') AS n_quantity
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
        WHEN i.t_account_id = 'string' AND NOT tally._is_uuid(i.s_account_id)
          THEN 'invalid_value|account_id: must be a UUID'
      END END,
      CASE WHEN i.t_api_key_id IS NOT NULL THEN CASE
        WHEN i.t_api_key_id NOT IN ('string', 'null') THEN format('invalid_type|api_key_id: must be a UUID string (got %s)', i.t_api_key_id)
        WHEN i.t_api_key_id = 'string' AND NOT tally._is_uuid(i.s_api_key_id)
          THEN 'invalid_value|api_key_id: must be a UUID'
      END END,
      CASE
        WHEN coalesce(i.t_account_id, 'null') = 'null' AND coalesce(i.t_api_key_id, 'null') = 'null'
          THEN 'missing_tenant|account_id, api_key_id: one of them is required'
      END,
      CASE WHEN i.t_occurred_at IS NOT NULL THEN CASE
        WHEN i.t_occurred_at NOT IN ('string', 'null') THEN format('invalid_type|occurred_at: must be an ISO 8601 string (got %s)', i.t_occurred_at)
        WHEN i.t_occurred_at = 'string' AND NOT tally._is_iso_timestamptz(i.s_occurred_at)
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
           CASE WHEN c.t_account_id = 'string' AND tally._is_uuid(c.s_account_id)
                THEN (c.s_account_id)::uuid END AS given_account_id,
           CASE WHEN c.t_api_key_id = 'string' AND tally._is_uuid(c.s_api_key_id)
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
      SELECT tally._token_cost(r.tokens_in, r.tokens_out, mp.input_usd_per_mtok, mp.output_usd_per_mtok) AS usd
      FROM tally.model_prices mp
      WHERE r.final_problem IS NULL
        AND (r.tokens_in IS NOT NULL OR r.tokens_out IS NOT NULL)
        AND (r.cost_usd IS NULL OR (r.cached AND r.potential_cost_usd IS NULL))
        AND mp.provider = r.provider AND mp.model = r.model AND mp.effective_from <= r.occurred_at
      ORDER BY mp.effective_from DESC
      LIMIT 1
    ) price ON true
  ) x
  $$;
COMMENT ON FUNCTION tally._parse_events(jsonb, bigint) IS
  'Validates a JSON array of events without raising: one row per item with its index (p_index_base + position), the item as sent, and either code + message or the typed event (tenant resolved, success derived, cost priced from tally.model_prices).';
REVOKE ALL ON FUNCTION tally._parse_events(jsonb, bigint) FROM PUBLIC, anon, authenticated, service_role;

-- Stores what _parse_events accepted and dead-letters the rest, in one statement.
-- Planner settings, pinned for this statement:
--  * enable_nestloop off: the planner cannot know how many items a JSON array holds (it
--    guesses 100, and far fewer after filters) and would join claimed keys to items with a
--    nested loop, quadratic in the batch size. Hash joins are right for every join here.
--  * jit off: the validator is one very large expression; compiling it costs seconds and
--    would be paid on every call, for a statement that runs in milliseconds.
--  * plpgsql with a forced generic plan: planning this statement costs milliseconds. A SQL
--    function would plan it again on every call, and plpgsql would too (a custom plan per
--    call) unless told to keep one plan for the session; the estimates do not depend on the
--    array's contents anyway.
CREATE FUNCTION tally._ingest(p_events jsonb, p_source text, p_index_base bigint DEFAULT 0) RETURNS jsonb
  LANGUAGE plpgsql
  SET search_path = ''
  SET enable_nestloop = off
  SET jit = off
  SET plan_cache_mode = force_generic_plan
  AS $$
DECLARE
  v_result  jsonb;
  v_attempt integer;
BEGIN
  -- Two attempts: an insert routed to events_default that waited while ensure_partitions
  -- attached the partition for its month fails the default partition's new constraint
  -- (23514). Nothing of the attempt survives (its subtransaction rolls back), and the next
  -- statement routes the rows to the new partition.
  FOR v_attempt IN 1..2 LOOP
  BEGIN
  WITH parsed AS MATERIALIZED (
    SELECT * FROM tally._parse_events(p_events, p_index_base)
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
    SELECT DISTINCT ON (p.account_id, p.idempotency_key) p.item_index, p.account_id, p.idempotency_key, p.occurred_at
    FROM parsed p
    WHERE p.code IS NULL AND p.idempotency_key IS NOT NULL
    ORDER BY p.account_id, p.idempotency_key, p.item_index
  ),
  claimed AS (
    -- keys not seen before. A key inserted by a transaction still in flight makes this wait
    -- for it: if it commits, the key is a duplicate here; if it rolls back, it is ours.
    -- Sorted, so two batches sharing keys lock them in the same order.
    INSERT INTO tally.idempotency_keys (account_id, idempotency_key, occurred_at)
    SELECT f.account_id, f.idempotency_key, f.occurred_at FROM first_of_key f
    ORDER BY f.account_id, f.idempotency_key
    ON CONFLICT DO NOTHING
    RETURNING account_id, idempotency_key
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
      AND (p.idempotency_key IS NULL
           OR p.item_index IN (SELECT f.item_index FROM first_of_key f
                               JOIN claimed c ON c.account_id = f.account_id AND c.idempotency_key = f.idempotency_key))
    ORDER BY p.item_index
    RETURNING 1
  )
  SELECT jsonb_build_object(
    'accepted',   (SELECT count(*) FROM stored),
    'duplicates', (SELECT count(*) FROM parsed p WHERE p.code IS NULL) - (SELECT count(*) FROM stored),
    'rejected',   coalesce((SELECT jsonb_agg(jsonb_build_object('index', p.item_index, 'code', p.code, 'message', p.message)
                                             ORDER BY p.item_index) FROM parsed p WHERE p.code IS NOT NULL), '[]'::jsonb))
  INTO v_result;
  RETURN v_result;
  EXCEPTION WHEN check_violation THEN
    IF v_attempt = 2 THEN
      RAISE;
    END IF;
  END;
  END LOOP;
END
$$;
COMMENT ON FUNCTION tally._ingest(jsonb, text, bigint) IS
  'Validates and stores a JSON array of events in one statement: valid items once per idempotency key, refused items into tally.rejected_events (source p_source). Returns {accepted, duplicates, rejected: [{index, code, message}]}.';
REVOKE ALL ON FUNCTION tally._ingest(jsonb, text, bigint) FROM PUBLIC, anon, authenticated, service_role;

-- The checks every public batch entry point makes before ingesting.
CREATE FUNCTION tally._check_batch(p_events jsonb) RETURNS void
  LANGUAGE plpgsql STABLE
  SET search_path = ''
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
COMMENT ON FUNCTION tally._check_batch(jsonb) IS
  'Raises invalid_parameter unless p_events is a JSON array, and batch_too_large when it holds more than the setting ingest.max_batch items.';
REVOKE ALL ON FUNCTION tally._check_batch(jsonb) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.record_events(p_events jsonb) RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
BEGIN
  PERFORM tally._check_batch(p_events);
  RETURN tally._ingest(p_events, 'record_events', 0);
END
$$;
COMMENT ON FUNCTION tally.record_events(jsonb) IS
  'Records a JSON array of events (at most the setting ingest.max_batch, default 10000) set-based. Valid items are stored once per (account, idempotency_key); invalid items are refused one by one and kept in tally.rejected_events. Returns {accepted, duplicates, rejected: [{index, code, message}]} with 0-based array indexes. Raises invalid_parameter or batch_too_large (22023) only for the array itself. Service callers only.';
REVOKE ALL ON FUNCTION tally.record_events(jsonb) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.record_events(jsonb) TO service_role;

CREATE FUNCTION tally.import_events(p_events jsonb, p_source text, p_first_index bigint DEFAULT 1) RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
BEGIN
  IF p_source IS NULL OR length(p_source) NOT BETWEEN 1 AND 500 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'source: must be 1 to 500 characters (e.g. the file name)');
  END IF;
  PERFORM tally._check_batch(p_events);
  RETURN tally._ingest(p_events, 'import:' || p_source, coalesce(p_first_index, 1));
END
$$;
COMMENT ON FUNCTION tally.import_events(jsonb, text, bigint) IS
  'record_events for bulk loaders such as `tally import`: the same validation and idempotency, with rejected items kept under source ''import:<p_source>'' and indexed from p_first_index (the line number of the first item). Service callers only.';
REVOKE ALL ON FUNCTION tally.import_events(jsonb, text, bigint) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.import_events(jsonb, text, bigint) TO service_role;

CREATE FUNCTION tally._reject_sqlstate(p_code text) RETURNS text
  LANGUAGE sql IMMUTABLE
  AS $$
    select case when p_code in ('unknown_api_key', 'revoked_api_key', 'expired_api_key') then '28000'
                when p_code = 'account_not_found' then 'P0002'
                else '22023' end
  $$;
COMMENT ON FUNCTION tally._reject_sqlstate(text) IS
  'The SQLSTATE record_event raises for a rejection code: 28000 for key problems, P0002 for account_not_found, else 22023.';
REVOKE ALL ON FUNCTION tally._reject_sqlstate(text) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.record_event(p_event jsonb)
  RETURNS TABLE (event_id bigint, duplicate boolean)
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  SET jit = off
  SET plan_cache_mode = force_generic_plan
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
    RETURN QUERY SELECT currval(pg_get_serial_sequence('tally.events', 'id')), false;
  ELSE
    -- a duplicate: the event is valid, so its tenant fields are well-formed UUIDs
    v_account := coalesce((p_event ->> 'account_id')::uuid,
                          (SELECT k.account_id FROM tally.api_keys k WHERE k.id = (p_event ->> 'api_key_id')::uuid));
    SELECT k.occurred_at INTO v_when FROM tally.idempotency_keys k
    WHERE k.account_id = v_account AND k.idempotency_key = v_key;
    RETURN QUERY
      SELECT e.id, true FROM tally.events e
      WHERE e.account_id = v_account AND e.occurred_at = v_when AND e.idempotency_key = v_key
      ORDER BY e.id LIMIT 1;
  END IF;
END
$$;
COMMENT ON FUNCTION tally.record_event(jsonb) IS
  'Records one event and returns (event_id, duplicate). A duplicate idempotency key returns the original event''s id with duplicate = true. An invalid event raises (nothing is stored; the caller has the error): SQLSTATE 22023 with the code in HINT (invalid_type, out_of_range, ...), 28000 for unknown_api_key / revoked_api_key / expired_api_key, P0002 for account_not_found. Usable inside the caller''s own transaction. Service callers only.';
REVOKE ALL ON FUNCTION tally.record_event(jsonb) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.record_event(jsonb) TO service_role;
