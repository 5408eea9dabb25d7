-- API key hashes move to their own table, so `select *` on tally.api_keys works.
--
-- tally.api_keys kept secret_hash behind column privileges: members could read every other
-- column, but supabase-js's default select() (`*`) failed with permission denied. The
-- hash now lives in tally.api_key_secrets, which no API role may read at all; api_keys is
-- readable whole by members (under RLS) and services. Lookups by the presented secret go
-- through the secrets table's hash index, then api_keys' primary key.

-- No key may be created between the copy below and the drop of the column: its hash would
-- be lost with the column. SHARE ROW EXCLUSIVE keeps writers out until this commits.
LOCK TABLE tally.api_keys IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE tally.api_key_secrets (
  account_id  uuid NOT NULL REFERENCES tally.accounts (id) ON DELETE CASCADE,
  api_key_id  uuid NOT NULL,
  secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
  PRIMARY KEY (account_id, api_key_id)
);
-- Not unique: account_id leads every unique key (Citus-ready); 240 random bits make a
-- collision practically impossible, and tally.create_api_key checks anyway.
CREATE INDEX api_key_secrets_secret_hash_idx ON tally.api_key_secrets (secret_hash);
COMMENT ON TABLE tally.api_key_secrets IS
  'The SHA-256 of each API key''s secret (never the secret), one row per tally.api_keys row. Readable by no API role; only Tally''s SECURITY DEFINER functions use it.';
COMMENT ON COLUMN tally.api_key_secrets.secret_hash IS 'sha256 of the secret''s UTF-8 bytes.';
ALTER TABLE tally.api_key_secrets ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.api_key_secrets FROM PUBLIC, anon, authenticated, service_role;

INSERT INTO tally.api_key_secrets (account_id, api_key_id, secret_hash)
SELECT k.account_id, k.id, k.secret_hash FROM tally.api_keys k;

DROP INDEX tally.api_keys_secret_hash_idx;
ALTER TABLE tally.api_keys DROP COLUMN secret_hash;
COMMENT ON TABLE tally.api_keys IS
  'API keys of an account: name, the visible prefix of the secret, who created it, when it expires or was revoked. The hash of the secret is in tally.api_key_secrets; the secret itself is never stored. Members read their accounts'' keys, every column.';

-- Table privileges instead of column privileges: every column, for the roles that read keys.
REVOKE ALL ON TABLE tally.api_keys FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.api_keys TO authenticated, service_role;

CREATE OR REPLACE FUNCTION tally.create_api_key(p_account_id uuid, p_name text, p_expires_at timestamptz DEFAULT NULL)
  RETURNS TABLE (id uuid, account_id uuid, name text, prefix text, secret text, expires_at timestamptz)
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
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
COMMENT ON FUNCTION tally.create_api_key(uuid, text, timestamptz) IS
  'Creates an API key and returns its secret: the only time the secret exists outside the caller (the database keeps its SHA-256 in tally.api_key_secrets). Needs role admin on the account or a service caller. Errors: invalid_parameter (22023), forbidden (42501); account_not_found (P0002) for service callers.';
REVOKE ALL ON FUNCTION tally.create_api_key(uuid, text, timestamptz) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.create_api_key(uuid, text, timestamptz) TO authenticated, service_role;

CREATE OR REPLACE FUNCTION tally.verify_api_key(p_secret text)
  RETURNS TABLE (api_key_id uuid, account_id uuid)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
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
COMMENT ON FUNCTION tally.verify_api_key(text) IS
  'Authenticates a presented secret by its SHA-256 (tally.api_key_secrets) and returns the key and its account. Errors (SQLSTATE 28000): unknown_api_key, revoked_api_key, expired_api_key; the messages name no id. Service callers only.';
REVOKE ALL ON FUNCTION tally.verify_api_key(text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.verify_api_key(text) TO service_role;
