-- Tenancy: accounts (the billing tenant) and their members.
--
-- Who may do what:
--   * service callers (service_role, or the installing/owner role on a direct connection)
--     manage everything through the functions below;
--   * an authenticated Supabase user sees the accounts they are a member of, and manages
--     them according to their role: owner > admin > member > viewer.
-- Tables are never written directly by API roles: only these SECURITY DEFINER functions
-- write, each with search_path pinned to '' and every name schema-qualified.

-- ---------------------------------------------------------------------------------------
-- Private helpers
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION tally._raise(p_code text, p_sqlstate text, p_message text) RETURNS void
  LANGUAGE plpgsql
  SET search_path = ''
  AS $$
BEGIN
  RAISE EXCEPTION USING MESSAGE = p_message, ERRCODE = p_sqlstate, HINT = p_code;
END
$$;
COMMENT ON FUNCTION tally._raise(text, text, text) IS
  'Raises the Tally error p_code (carried in HINT) with SQLSTATE p_sqlstate and a message naming the field.';
REVOKE ALL ON FUNCTION tally._raise(text, text, text) FROM PUBLIC, anon, authenticated, service_role;

-- The effective caller of a SECURITY DEFINER function: the role set with SET ROLE
-- (PostgREST does SET LOCAL ROLE per request), else the login role. A caller that is a
-- member of service_role (superusers are members of every role) is a trusted server.
CREATE FUNCTION tally._caller_is_service() RETURNS boolean
  LANGUAGE sql STABLE
  SET search_path = ''
  AS $$
    select pg_catalog.pg_has_role(
      case when pg_catalog.current_setting('role') = 'none' then session_user
           else pg_catalog.current_setting('role')::name end,
      'service_role', 'MEMBER')
  $$;
COMMENT ON FUNCTION tally._caller_is_service() IS
  'True when the effective caller (SET ROLE, else the login role) is service_role, a member of it, or a superuser.';
REVOKE ALL ON FUNCTION tally._caller_is_service() FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally._role_rank(p_role text) RETURNS integer
  LANGUAGE sql IMMUTABLE
  SET search_path = ''
  AS $$ select case p_role when 'owner' then 4 when 'admin' then 3 when 'member' then 2 when 'viewer' then 1 else 0 end $$;
COMMENT ON FUNCTION tally._role_rank(text) IS 'Orders member roles: owner 4, admin 3, member 2, viewer 1, anything else 0.';
REVOKE ALL ON FUNCTION tally._role_rank(text) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally._is_valid_timezone(p_timezone text) RETURNS boolean
  LANGUAGE sql STABLE
  SET search_path = ''
  AS $$ select exists (select 1 from pg_catalog.pg_timezone_names where name = p_timezone) $$;
COMMENT ON FUNCTION tally._is_valid_timezone(text) IS 'True for an IANA time zone name known to this server (e.g. Europe/Paris, UTC).';
REVOKE ALL ON FUNCTION tally._is_valid_timezone(text) FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------

CREATE TABLE tally.accounts (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  external_id text UNIQUE CHECK (length(external_id) BETWEEN 1 AND 200),
  timezone    text NOT NULL DEFAULT 'UTC' CHECK (tally._is_valid_timezone(timezone)),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tally.accounts IS
  'Billing tenants (a team, project or portal). external_id is an optional unique key from another system (a Stripe customer, a HubSpot portal); timezone (IANA) defines the account''s calendar days and months.';

CREATE TABLE tally.account_members (
  account_id uuid NOT NULL REFERENCES tally.accounts (id) ON DELETE CASCADE,
  user_id    uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  role       text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account_id, user_id)
);
-- The RLS helper looks members up by user.
CREATE INDEX account_members_user_id_idx ON tally.account_members (user_id, account_id);
COMMENT ON TABLE tally.account_members IS
  'Who belongs to which account, with a role: owner > admin > member > viewer. Written only by tally.create_account, tally.set_account_member and tally.remove_account_member.';

-- ---------------------------------------------------------------------------------------
-- RLS helpers (SECURITY DEFINER so policies can read memberships without recursion)
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION tally._my_account_ids() RETURNS uuid[]
  LANGUAGE sql STABLE
  SECURITY DEFINER
  SET search_path = ''
  AS $$
    select coalesce(pg_catalog.array_agg(m.account_id), '{}')
    from tally.account_members m
    where m.user_id = (select auth.uid())
  $$;
COMMENT ON FUNCTION tally._my_account_ids() IS
  'The accounts the current Supabase user (auth.uid()) is a member of. Policies call it as (select tally._my_account_ids()) so it runs once per statement.';
REVOKE ALL ON FUNCTION tally._my_account_ids() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally._my_account_ids() TO authenticated, service_role;

CREATE FUNCTION tally.has_role_on_account(p_account_id uuid, p_role text DEFAULT 'viewer') RETURNS boolean
  LANGUAGE sql STABLE
  SECURITY DEFINER
  SET search_path = ''
  AS $$
    select exists (
      select 1 from tally.account_members m
      where m.account_id = p_account_id
        and m.user_id = (select auth.uid())
        and tally._role_rank(m.role) >= tally._role_rank(p_role)
    )
  $$;
COMMENT ON FUNCTION tally.has_role_on_account(uuid, text) IS
  'True when the current Supabase user is a member of the account with at least role p_role (owner > admin > member > viewer; default viewer, i.e. any member).';
REVOKE ALL ON FUNCTION tally.has_role_on_account(uuid, text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.has_role_on_account(uuid, text) TO authenticated, service_role;

-- Raises forbidden unless the caller is a service or has at least p_role on the account.
CREATE FUNCTION tally._require_account_role(p_account_id uuid, p_role text) RETURNS void
  LANGUAGE plpgsql
  SET search_path = ''
  AS $$
BEGIN
  IF p_account_id IS NULL THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'account_id is required');
  END IF;
  IF NOT EXISTS (SELECT 1 FROM tally.accounts WHERE id = p_account_id) THEN
    PERFORM tally._raise('account_not_found', 'P0002', format('account %s does not exist', p_account_id));
  END IF;
  IF NOT tally._caller_is_service() AND NOT tally.has_role_on_account(p_account_id, p_role) THEN
    PERFORM tally._raise('forbidden', '42501', format('requires role %s on account %s', p_role, p_account_id));
  END IF;
END
$$;
COMMENT ON FUNCTION tally._require_account_role(uuid, text) IS
  'Guard used by the management functions: account must exist (account_not_found, P0002) and the caller must be a service or hold at least p_role (forbidden, 42501).';
REVOKE ALL ON FUNCTION tally._require_account_role(uuid, text) FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- Policies: members read their accounts; services read everything. No API role writes.
-- ---------------------------------------------------------------------------------------

ALTER TABLE tally.accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE tally.account_members ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.accounts, tally.account_members FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.accounts, tally.account_members TO authenticated, service_role;

CREATE POLICY accounts_member_read ON tally.accounts FOR SELECT TO authenticated
  USING (id = ANY ((select tally._my_account_ids())::uuid[]));
CREATE POLICY accounts_service_read ON tally.accounts FOR SELECT TO service_role USING (true);

CREATE POLICY account_members_member_read ON tally.account_members FOR SELECT TO authenticated
  USING (account_id = ANY ((select tally._my_account_ids())::uuid[]));
CREATE POLICY account_members_service_read ON tally.account_members FOR SELECT TO service_role USING (true);

-- ---------------------------------------------------------------------------------------
-- Management functions
-- ---------------------------------------------------------------------------------------

-- Validates account fields; NULL means "not given" and passes.
CREATE FUNCTION tally._check_account_fields(p_name text, p_external_id text, p_timezone text) RETURNS void
  LANGUAGE plpgsql
  SET search_path = ''
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
COMMENT ON FUNCTION tally._check_account_fields(text, text, text) IS
  'Raises invalid_parameter / invalid_timezone (22023) for a bad account name, external_id or timezone; NULL arguments are not checked.';
REVOKE ALL ON FUNCTION tally._check_account_fields(text, text, text) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.create_account(
  p_name        text,
  p_external_id text DEFAULT NULL,
  p_timezone    text DEFAULT 'UTC',
  p_owner_id    uuid DEFAULT NULL
) RETURNS tally.accounts
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
DECLARE
  v_owner   uuid := p_owner_id;
  v_account tally.accounts;
BEGIN
  IF NOT tally._caller_is_service() THEN
    -- A user creates accounts for themselves only.
    IF (select auth.uid()) IS NULL THEN
      PERFORM tally._raise('forbidden', '42501', 'create_account needs a signed-in user or a service caller');
    END IF;
    IF v_owner IS NOT NULL AND v_owner <> (select auth.uid()) THEN
      PERFORM tally._raise('forbidden', '42501', 'owner_id: a user can only create accounts they own');
    END IF;
    v_owner := (select auth.uid());
  END IF;
  IF p_name IS NULL THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'name: must be 1 to 200 characters');
  END IF;
  IF p_timezone IS NULL THEN
    PERFORM tally._raise('invalid_timezone', '22023', 'timezone: must be an IANA time zone name');
  END IF;
  PERFORM tally._check_account_fields(p_name, p_external_id, p_timezone);
  IF v_owner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM auth.users WHERE id = v_owner) THEN
    PERFORM tally._raise('user_not_found', 'P0002', format('owner_id: user %s does not exist', v_owner));
  END IF;

  BEGIN
    INSERT INTO tally.accounts (name, external_id, timezone)
    VALUES (btrim(p_name), p_external_id, p_timezone)
    RETURNING * INTO v_account;
  EXCEPTION WHEN unique_violation THEN
    PERFORM tally._raise('duplicate_external_id', '23505', format('external_id: an account with %L already exists', p_external_id));
  END;
  IF v_owner IS NOT NULL THEN
    INSERT INTO tally.account_members (account_id, user_id, role) VALUES (v_account.id, v_owner, 'owner');
  END IF;
  RETURN v_account;
END
$$;
COMMENT ON FUNCTION tally.create_account(text, text, text, uuid) IS
  'Creates an account and makes its owner a member with role owner. A signed-in user always owns what they create; a service caller may name any owner or none. Errors: invalid_parameter / invalid_timezone (22023), duplicate_external_id (23505), user_not_found (P0002), forbidden (42501).';
REVOKE ALL ON FUNCTION tally.create_account(text, text, text, uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.create_account(text, text, text, uuid) TO authenticated, service_role;

CREATE FUNCTION tally.update_account(
  p_account_id  uuid,
  p_name        text DEFAULT NULL,
  p_external_id text DEFAULT NULL,
  p_timezone    text DEFAULT NULL
) RETURNS tally.accounts
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
DECLARE
  v_account tally.accounts;
BEGIN
  PERFORM tally._require_account_role(p_account_id, 'admin');
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
    PERFORM tally._raise('duplicate_external_id', '23505', format('external_id: an account with %L already exists', p_external_id));
  END;
  RETURN v_account;
END
$$;
COMMENT ON FUNCTION tally.update_account(uuid, text, text, text) IS
  'Changes an account''s name, external_id or timezone (NULL keeps the current value). Needs role admin or a service caller. Errors as tally.create_account, plus account_not_found (P0002).';
REVOKE ALL ON FUNCTION tally.update_account(uuid, text, text, text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.update_account(uuid, text, text, text) TO authenticated, service_role;

CREATE FUNCTION tally.set_account_member(p_account_id uuid, p_user_id uuid, p_role text) RETURNS tally.account_members
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
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
COMMENT ON FUNCTION tally.set_account_member(uuid, uuid, text) IS
  'Adds a user to an account or changes their role. Needs role admin (owner to grant or change the owner role) or a service caller. The last owner cannot be demoted (last_owner, 22023). Errors: invalid_parameter (22023), user_not_found / account_not_found (P0002), forbidden (42501).';
REVOKE ALL ON FUNCTION tally.set_account_member(uuid, uuid, text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.set_account_member(uuid, uuid, text) TO authenticated, service_role;

CREATE FUNCTION tally.remove_account_member(p_account_id uuid, p_user_id uuid) RETURNS boolean
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
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
COMMENT ON FUNCTION tally.remove_account_member(uuid, uuid) IS
  'Removes a user from an account; returns false when they were not a member. A member may remove themselves; removing others needs admin (owner to remove an owner) or a service caller. The last owner cannot be removed (last_owner, 22023).';
REVOKE ALL ON FUNCTION tally.remove_account_member(uuid, uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.remove_account_member(uuid, uuid) TO authenticated, service_role;
