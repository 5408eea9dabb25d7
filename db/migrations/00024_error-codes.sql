-- One error table: every stable Tally code the SQL raises or records, with its SQLSTATE.
--
-- tally._raise looks the SQLSTATE up here by code, so a code always comes with the same
-- SQLSTATE, whichever function raises it. The TypeScript client's table (ERROR_CODES in
-- src/client/errors.ts) must list exactly these pairs, and docs/errors.md every code: a
-- test checks both. A new code is one row here, one entry there and one line in the docs.

CREATE TABLE tally.error_codes (
  code        text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,62}$'),
  sqlstate    text NOT NULL CHECK (sqlstate ~ '^[0-9A-Z]{5}$'),
  description text NOT NULL CHECK (length(description) BETWEEN 1 AND 500)
);
COMMENT ON TABLE tally.error_codes IS
  'Every stable Tally error code the SQL raises (in HINT) or records (in rejected_events), with the SQLSTATE it is raised with. tally._raise looks the SQLSTATE up here by code.';
COMMENT ON COLUMN tally.error_codes.code IS 'The stable code: carried in HINT when raised, in rejected_events.code when recorded.';
COMMENT ON COLUMN tally.error_codes.sqlstate IS 'The SQLSTATE the code is raised with: 42501 permission, 22023 bad parameter, P0002 not found, 28000 API key, 23505 conflict, P0001 a failed check (rollups_mismatch).';
ALTER TABLE tally.error_codes ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.error_codes FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.error_codes TO service_role;
CREATE POLICY error_codes_service_read ON tally.error_codes FOR SELECT TO service_role USING (true);

INSERT INTO tally.error_codes (code, sqlstate, description) VALUES
  ('invalid_parameter',     '22023', 'A function was called with a bad argument; the message names it.'),
  ('invalid_timezone',      '22023', 'Not an IANA time zone name known to the server.'),
  ('last_owner',            '22023', 'The change would leave an account without an owner.'),
  ('batch_too_large',       '22023', 'More items than the setting ingest.max_batch in one call.'),
  ('unknown_setting',       '22023', 'tally.set_setting was given a name that is not in tally.settings.'),
  ('invalid_mapping',       '22023', 'tally.attach_meter: an unknown field, a missing or ill-typed column, a refused constant, no tenant.'),
  ('timezone_locked',       '22023', 'The account already has daily rollups cut in its current time zone.'),
  ('past_retention',        '22023', 'A rollup range whose raw events are past retention.events.'),
  ('forbidden',             '42501', 'The caller may not do this: not a service caller, or no sufficient role on the account named.'),
  ('duplicate_external_id', '23505', 'Another account already has this external_id.'),
  ('account_not_found',     'P0002', 'No such account (told only to service callers; or an event named an unknown account).'),
  ('user_not_found',        'P0002', 'No such user in auth.users.'),
  ('event_not_found',       'P0002', 'void_events was given an id that is not in tally.events.'),
  ('api_key_not_found',     'P0002', 'revoke_api_key was given a key id that does not exist (told only to service callers).'),
  ('unknown_api_key',       '28000', 'The presented API key (secret, or an event''s api_key_id) is not recognised.'),
  ('revoked_api_key',       '28000', 'The presented API key was revoked (for an event: at occurred_at).'),
  ('expired_api_key',       '28000', 'The presented API key had expired (for an event: at occurred_at).'),
  ('rollups_mismatch',      'P0001', 'A rollup bucket differs from the raw events it was folded from.'),
  ('invalid_event',         '22023', 'The event is not a JSON object.'),
  ('unknown_field',         '22023', 'The event has a field Tally does not know.'),
  ('invalid_type',          '22023', 'A field has the wrong JSON type.'),
  ('invalid_value',         '22023', 'A field has a value outside its allowed set or format.'),
  ('out_of_range',          '22023', 'A number is outside its allowed range.'),
  ('too_long',              '22023', 'A text field is longer than allowed.'),
  ('too_large',             '22023', 'properties is larger than ingest.properties_max_bytes.'),
  ('missing_field',         '22023', 'A required field is absent.'),
  ('missing_tenant',        '22023', 'The event names neither account_id nor api_key_id.'),
  ('future_timestamp',      '22023', 'occurred_at is further in the future than ingest.max_future_skew.'),
  ('account_mismatch',      '22023', 'account_id and the account of api_key_id differ.'),
  ('meter_mapping_broken',  '22023', 'A metered table''s mapped column was renamed, dropped or retyped; the row is kept whole in rejected_events.');

-- Raises the Tally error p_code with the SQLSTATE the table gives it.
CREATE FUNCTION tally._raise(p_code text, p_message text) RETURNS void
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_sqlstate text;
BEGIN
  SELECT c.sqlstate INTO v_sqlstate FROM tally.error_codes c WHERE c.code = p_code;
  -- A code missing from the table is a bug the tests catch; it still reaches the caller.
  RAISE EXCEPTION USING MESSAGE = p_message, ERRCODE = coalesce(v_sqlstate, 'P0001'), HINT = p_code;
END
$$;
COMMENT ON FUNCTION tally._raise(text, text) IS
  'Raises the Tally error p_code (carried in HINT) with the SQLSTATE tally.error_codes gives it, and a message naming the field.';
REVOKE ALL ON FUNCTION tally._raise(text, text) FROM PUBLIC, anon, authenticated, service_role;

-- The three-argument form the earlier migrations call: the table decides the SQLSTATE; the
-- argument is used only for a code the table does not have.
CREATE OR REPLACE FUNCTION tally._raise(p_code text, p_sqlstate text, p_message text) RETURNS void
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_sqlstate text;
BEGIN
  SELECT c.sqlstate INTO v_sqlstate FROM tally.error_codes c WHERE c.code = p_code;
  RAISE EXCEPTION USING MESSAGE = p_message, ERRCODE = coalesce(v_sqlstate, p_sqlstate, 'P0001'), HINT = p_code;
END
$$;
COMMENT ON FUNCTION tally._raise(text, text, text) IS
  'Compatibility form of tally._raise(code, message): the SQLSTATE comes from tally.error_codes; p_sqlstate only for a code the table lacks.';
REVOKE ALL ON FUNCTION tally._raise(text, text, text) FROM PUBLIC, anon, authenticated, service_role;
