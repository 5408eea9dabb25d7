-- No existence oracles, no leaked names.
--
-- For a caller who is not a service, an account or API key they are not a member of and
-- one that does not exist are indistinguishable: both are refused with the same code,
-- SQLSTATE and message (forbidden, 42501). Only a service caller, who may see everything,
-- is told account_not_found / api_key_not_found. No message names an object the caller did
-- not supply: revoke_api_key never names the key's account (verify_api_key's messages, which
-- named the key's id though the caller presented only a secret, change with the move of
-- the hashes to tally.api_key_secrets).
--
-- external_id is a key from another system (a Stripe customer, a HubSpot portal), unique
-- across all accounts: a signed-in user who could set it would learn from
-- duplicate_external_id that another tenant uses it. Only service callers set it.

-- The guard of update_account, set_account_member, remove_account_member and create_api_key.
CREATE OR REPLACE FUNCTION tally._require_account_role(p_account_id uuid, p_role text) RETURNS void
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
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
COMMENT ON FUNCTION tally._require_account_role(uuid, text) IS
  'Guard used by the management functions. A service caller passes when the account exists (else account_not_found, P0002). Anyone else needs at least p_role on it; an account they are not a member of and one that does not exist get the same forbidden (42501).';
REVOKE ALL ON FUNCTION tally._require_account_role(uuid, text) FROM PUBLIC, anon, authenticated, service_role;

CREATE OR REPLACE FUNCTION tally.revoke_api_key(p_id uuid) RETURNS timestamptz
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
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
COMMENT ON FUNCTION tally.revoke_api_key(uuid) IS
  'Revokes an API key (idempotent: revoking twice keeps the first time) and returns when it was revoked. Needs role admin on its account or a service caller. Errors: forbidden (42501) for a key the caller does not administer, whether it exists or not; api_key_not_found (P0002), service callers only.';
REVOKE ALL ON FUNCTION tally.revoke_api_key(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.revoke_api_key(uuid) TO authenticated, service_role;

-- create_account and update_account: as before (00004), plus external_id for service callers only.
CREATE OR REPLACE FUNCTION tally.create_account(
  p_name        text,
  p_external_id text DEFAULT NULL,
  p_timezone    text DEFAULT 'UTC',
  p_owner_id    uuid DEFAULT NULL
) RETURNS tally.accounts
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
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
COMMENT ON FUNCTION tally.create_account(text, text, text, uuid) IS
  'Creates an account and makes its owner a member with role owner. A signed-in user always owns what they create and cannot set external_id; a service caller may name any owner or none, and an external_id. Errors: invalid_parameter / invalid_timezone (22023), duplicate_external_id (23505), user_not_found (P0002), forbidden (42501).';
REVOKE ALL ON FUNCTION tally.create_account(text, text, text, uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.create_account(text, text, text, uuid) TO authenticated, service_role;

CREATE OR REPLACE FUNCTION tally.update_account(
  p_account_id  uuid,
  p_name        text DEFAULT NULL,
  p_external_id text DEFAULT NULL,
  p_timezone    text DEFAULT NULL
) RETURNS tally.accounts
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
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
COMMENT ON FUNCTION tally.update_account(uuid, text, text, text) IS
  'Changes an account''s name, external_id or timezone (NULL keeps the current value). Needs role admin or a service caller; external_id only a service caller. Errors as tally.create_account; account_not_found (P0002) only for service callers, forbidden (42501) otherwise.';
REVOKE ALL ON FUNCTION tally.update_account(uuid, text, text, text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.update_account(uuid, text, text, text) TO authenticated, service_role;
