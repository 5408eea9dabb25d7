-- Supabase compatibility shim.
--
-- On Supabase the roles anon, authenticated and service_role, the schema auth, the
-- functions auth.uid(), auth.jwt(), auth.role() and the table auth.users already exist:
-- this migration leaves every one of them untouched. On plain PostgreSQL 15-17 it creates
-- whatever is missing, with the same behaviour as Supabase's own definitions: the
-- functions read the PostgREST setting request.jwt.claims (a JSON object), so policies
-- written for Supabase work unchanged, and tests can act as a user with
--   set local role authenticated;
--   select set_config('request.jwt.claims', '{"sub":"<uuid>","role":"authenticated"}', true);

-- Roles are cluster-wide. A migration in another database of the same cluster may create
-- them at the same moment, so a concurrent duplicate is not an error.
DO $roles$
DECLARE
  v_role text;
BEGIN
  FOREACH v_role IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_role);
    BEGIN
      IF v_role = 'service_role' THEN
        -- Supabase's service_role bypasses RLS. Only a superuser may grant BYPASSRLS;
        -- without it the role is created plain and Tally's own policies still admit it.
        BEGIN
          EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT BYPASSRLS', v_role);
        EXCEPTION WHEN insufficient_privilege THEN
          EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', v_role);
          RAISE NOTICE 'created role service_role without BYPASSRLS (installer is not a superuser)';
        END;
      ELSE
        EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', v_role);
      END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;
    END;
  END LOOP;
END
$roles$;

-- The auth schema and its objects, each created only when absent.
DO $auth$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'auth') THEN
    CREATE SCHEMA auth;
    COMMENT ON SCHEMA auth IS 'Supabase-compatible auth shim created by Tally on plain PostgreSQL.';
    REVOKE ALL ON SCHEMA auth FROM PUBLIC;
    GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
  END IF;

  IF to_regprocedure('auth.uid()') IS NULL THEN
    CREATE FUNCTION auth.uid() RETURNS uuid
      LANGUAGE sql STABLE
      AS $f$
        select coalesce(
          nullif(current_setting('request.jwt.claim.sub', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
        )::uuid
      $f$;
    COMMENT ON FUNCTION auth.uid() IS 'The sub claim of the request JWT (request.jwt.claims), as Supabase defines it.';
    GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;
  END IF;

  IF to_regprocedure('auth.role()') IS NULL THEN
    CREATE FUNCTION auth.role() RETURNS text
      LANGUAGE sql STABLE
      AS $f$
        select coalesce(
          nullif(current_setting('request.jwt.claim.role', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
        )::text
      $f$;
    COMMENT ON FUNCTION auth.role() IS 'The role claim of the request JWT (request.jwt.claims), as Supabase defines it.';
    GRANT EXECUTE ON FUNCTION auth.role() TO anon, authenticated, service_role;
  END IF;

  IF to_regprocedure('auth.jwt()') IS NULL THEN
    CREATE FUNCTION auth.jwt() RETURNS jsonb
      LANGUAGE sql STABLE
      AS $f$
        select coalesce(
          nullif(current_setting('request.jwt.claim', true), ''),
          nullif(current_setting('request.jwt.claims', true), '')
        )::jsonb
      $f$;
    COMMENT ON FUNCTION auth.jwt() IS 'The claims of the request JWT (request.jwt.claims), as Supabase defines it.';
    GRANT EXECUTE ON FUNCTION auth.jwt() TO anon, authenticated, service_role;
  END IF;

  -- Account memberships reference auth.users, as on Supabase. The shim keeps only what
  -- Tally needs; an application may add columns.
  IF to_regclass('auth.users') IS NULL THEN
    CREATE TABLE auth.users (
      id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      email      text UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE auth.users IS 'Supabase-compatible users table created by Tally on plain PostgreSQL; on Supabase the real one is used.';
    ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY;
    REVOKE ALL ON TABLE auth.users FROM PUBLIC;
  END IF;
END
$auth$;
