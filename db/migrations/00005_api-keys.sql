-- API keys: how an app's server identifies the account behind a request.
--
-- The secret is generated in the database, returned once by tally.create_api_key and
-- never stored: only its SHA-256 (core sha256(), no extension) is kept, and no API role
-- may read that column. A key is looked up by the hash of what the caller presents.

CREATE TABLE tally.api_keys (
  account_id  uuid NOT NULL REFERENCES tally.accounts (id) ON DELETE CASCADE,
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  prefix      text NOT NULL CHECK (length(prefix) = 12),
  secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
  created_by  uuid,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz,
  revoked_at  timestamptz,
  PRIMARY KEY (account_id, id),
  CHECK (expires_at IS NULL OR expires_at > created_at)
);
-- Lookups by the presented secret's hash and by key id alone (events carry only the key).
-- Not unique: account_id leads every unique key (Citus-ready); 240 random bits make a
-- collision practically impossible, and tally.create_api_key checks anyway.
CREATE INDEX api_keys_secret_hash_idx ON tally.api_keys (secret_hash);
CREATE INDEX api_keys_id_idx ON tally.api_keys (id);
COMMENT ON TABLE tally.api_keys IS
  'API keys of an account: name, the visible prefix of the secret, and the SHA-256 of the secret (never the secret). secret_hash is readable by no API role.';
COMMENT ON COLUMN tally.api_keys.prefix IS 'The first 12 characters of the secret, to recognise a key in a list (e.g. tk_live_AbCd).';
COMMENT ON COLUMN tally.api_keys.secret_hash IS 'sha256 of the secret''s UTF-8 bytes. Not granted to any API role.';

ALTER TABLE tally.api_keys ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.api_keys FROM PUBLIC, anon, authenticated, service_role;
-- Column privileges: everything but secret_hash.
GRANT SELECT (account_id, id, name, prefix, created_by, created_at, expires_at, revoked_at)
  ON TABLE tally.api_keys TO authenticated, service_role;

CREATE POLICY api_keys_member_read ON tally.api_keys FOR SELECT TO authenticated
  USING (account_id = ANY ((select tally._my_account_ids())::uuid[]));
CREATE POLICY api_keys_service_read ON tally.api_keys FOR SELECT TO service_role USING (true);

CREATE FUNCTION tally.create_api_key(p_account_id uuid, p_name text, p_expires_at timestamptz DEFAULT NULL)
  RETURNS TABLE (id uuid, account_id uuid, name text, prefix text, secret text, expires_at timestamptz)
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
DECLARE
  v_secret text;
  v_hash   bytea;
  v_id     uuid;
BEGIN
  PERFORM tally._require_account_role(p_account_id, 'admin');
  IF p_name IS NULL OR length(btrim(p_name)) NOT BETWEEN 1 AND 200 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'name: must be 1 to 200 characters');
  END IF;
  IF p_expires_at IS NOT NULL AND p_expires_at <= now() THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'expires_at: must be in the future');
  END IF;

  -- 'tk_' + 40 url-safe base64 characters of two random UUIDs (240 random bits).
  LOOP
    v_secret := 'tk_' || left(translate(encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'base64'), '+/=', '-_'), 40);
    v_hash := sha256(convert_to(v_secret, 'UTF8'));
    EXIT WHEN NOT EXISTS (SELECT 1 FROM tally.api_keys k WHERE k.secret_hash = v_hash);
  END LOOP;

  INSERT INTO tally.api_keys AS k (account_id, name, prefix, secret_hash, created_by, expires_at)
  VALUES (p_account_id, btrim(p_name), left(v_secret, 12), v_hash, (select auth.uid()), p_expires_at)
  RETURNING k.id INTO v_id;

  RETURN QUERY SELECT v_id, p_account_id, btrim(p_name), left(v_secret, 12), v_secret, p_expires_at;
END
$$;
COMMENT ON FUNCTION tally.create_api_key(uuid, text, timestamptz) IS
  'Creates an API key and returns its secret: the only time the secret exists outside the caller. Needs role admin on the account or a service caller. Errors: invalid_parameter (22023), account_not_found (P0002), forbidden (42501).';
REVOKE ALL ON FUNCTION tally.create_api_key(uuid, text, timestamptz) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.create_api_key(uuid, text, timestamptz) TO authenticated, service_role;

CREATE FUNCTION tally.revoke_api_key(p_id uuid) RETURNS timestamptz
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
DECLARE
  v_account uuid;
  v_revoked timestamptz;
BEGIN
  SELECT k.account_id INTO v_account FROM tally.api_keys k WHERE k.id = p_id;
  IF v_account IS NULL THEN
    PERFORM tally._raise('unknown_api_key', 'P0002', format('id: API key %s does not exist', p_id));
  END IF;
  PERFORM tally._require_account_role(v_account, 'admin');
  UPDATE tally.api_keys k SET revoked_at = coalesce(k.revoked_at, now())
  WHERE k.account_id = v_account AND k.id = p_id
  RETURNING k.revoked_at INTO v_revoked;
  RETURN v_revoked;
END
$$;
COMMENT ON FUNCTION tally.revoke_api_key(uuid) IS
  'Revokes an API key (idempotent: revoking twice keeps the first time) and returns when it was revoked. Needs role admin on its account or a service caller. Errors: unknown_api_key (P0002), forbidden (42501).';
REVOKE ALL ON FUNCTION tally.revoke_api_key(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.revoke_api_key(uuid) TO authenticated, service_role;

CREATE FUNCTION tally.verify_api_key(p_secret text)
  RETURNS TABLE (api_key_id uuid, account_id uuid)
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = ''
  AS $$
DECLARE
  v_key record;
BEGIN
  SELECT k.id, k.account_id, k.revoked_at, k.expires_at INTO v_key
  FROM tally.api_keys k
  WHERE k.secret_hash = sha256(convert_to(coalesce(p_secret, ''), 'UTF8'));
  IF NOT FOUND THEN
    PERFORM tally._raise('unknown_api_key', '28000', 'api key: not recognised');
  ELSIF v_key.revoked_at IS NOT NULL THEN
    PERFORM tally._raise('revoked_api_key', '28000', format('api key %s was revoked at %s', v_key.id, v_key.revoked_at));
  ELSIF v_key.expires_at IS NOT NULL AND v_key.expires_at <= now() THEN
    PERFORM tally._raise('expired_api_key', '28000', format('api key %s expired at %s', v_key.id, v_key.expires_at));
  END IF;
  RETURN QUERY SELECT v_key.id, v_key.account_id;
END
$$;
COMMENT ON FUNCTION tally.verify_api_key(text) IS
  'Authenticates a presented secret by its SHA-256 and returns the key and its account. Errors (SQLSTATE 28000): unknown_api_key, revoked_api_key, expired_api_key. Service callers only.';
REVOKE ALL ON FUNCTION tally.verify_api_key(text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.verify_api_key(text) TO service_role;
