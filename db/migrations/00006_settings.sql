-- Settings: the tunable limits of Tally, one row each, with a type and bounds so a bad
-- value is refused when it is set rather than when a job first reads it.
--
-- Readers use tally._setting_int(name) / tally._setting_interval(name); operators use
-- tally.set_setting(name, value) (service callers only) and read tally.settings.

CREATE TABLE tally.settings (
  name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
  kind        text NOT NULL CHECK (kind IN ('integer', 'interval')),
  value       text NOT NULL,
  default_value text NOT NULL,
  min_value   text NOT NULL,
  max_value   text NOT NULL,
  description text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tally.settings IS
  'Tunable limits (batch size, clock skew, retention windows, ...): value, default, bounds and what each one does. Change with tally.set_setting(name, value).';

ALTER TABLE tally.settings ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.settings FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.settings TO service_role;
CREATE POLICY settings_service_read ON tally.settings FOR SELECT TO service_role USING (true);

INSERT INTO tally.settings (name, kind, value, default_value, min_value, max_value, description) VALUES
  ('ingest.max_batch', 'integer', '10000', '10000', '1', '100000',
   'Most events one tally.record_events call accepts; a larger array is refused with batch_too_large.'),
  ('ingest.max_future_skew', 'interval', '5 minutes', '5 minutes', '0 seconds', '1 day',
   'How far in the future occurred_at may be (clock skew between the app and the database) before an event is rejected with future_timestamp.'),
  ('ingest.error_message_max_length', 'integer', '2000', '2000', '100', '100000',
   'error_message is kept raw but truncated to this many characters.'),
  ('ingest.properties_max_bytes', 'integer', '8192', '8192', '256', '1048576',
   'Largest properties object (bytes of its JSON text) an event may carry; larger is rejected with too_large.'),
  ('ingest.idempotency_retention', 'interval', '7 days', '7 days', '1 hour', '400 days',
   'How long an idempotency key is remembered: a retry within this window is a duplicate. Older keys are purged by tally.purge_idempotency_keys().'),
  ('partitions.months_ahead', 'integer', '3', '3', '1', '36',
   'How many future months tally.ensure_partitions() keeps ready, beyond the current one.');

-- Checks a value against the setting's kind and bounds; returns it normalised.
CREATE FUNCTION tally._normalize_setting(p_kind text, p_value text, p_min text, p_max text) RETURNS text
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = ''
  AS $$
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
$$;
COMMENT ON FUNCTION tally._normalize_setting(text, text, text, text) IS
  'The value normalised (e.g. ''05'' -> ''5'', '' 7 days '' -> ''7 days''), or NULL when it is not of the kind or outside [min, max].';
REVOKE ALL ON FUNCTION tally._normalize_setting(text, text, text, text) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.set_setting(p_name text, p_value text) RETURNS tally.settings
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
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
COMMENT ON FUNCTION tally.set_setting(text, text) IS
  'Sets a setting (NULL restores its default) after checking its kind and bounds, and returns the row. Service callers only. Errors: unknown_setting, invalid_parameter (22023), forbidden (42501).';
REVOKE ALL ON FUNCTION tally.set_setting(text, text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.set_setting(text, text) TO service_role;

-- Readers used inside Tally's own functions (which run as the schema owner).
CREATE FUNCTION tally._setting_int(p_name text) RETURNS bigint
  LANGUAGE sql STABLE
  AS $$ select s.value::bigint from tally.settings s where s.name = p_name $$;
COMMENT ON FUNCTION tally._setting_int(text) IS 'The integer value of a setting (NULL if there is no such setting).';
REVOKE ALL ON FUNCTION tally._setting_int(text) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally._setting_interval(p_name text) RETURNS interval
  LANGUAGE sql STABLE
  AS $$ select s.value::interval from tally.settings s where s.name = p_name $$;
COMMENT ON FUNCTION tally._setting_interval(text) IS 'The interval value of a setting (NULL if there is no such setting).';
REVOKE ALL ON FUNCTION tally._setting_interval(text) FROM PUBLIC, anon, authenticated, service_role;
