-- Sequences follow the privilege rules of tables and functions.
--
-- A DBA's broad default privileges (ALTER DEFAULT PRIVILEGES ... GRANT ALL ON SEQUENCES TO
-- anon, authenticated) reach the sequences behind Tally's identity columns. With USAGE or
-- UPDATE on tally.events_id_seq, anon could setval() it backwards; the rollups, which take
-- windows of ids above their watermark, would then skip every tenant's new events. No API
-- role needs any sequence: ids are drawn by the column defaults inside Tally's SECURITY
-- DEFINER functions, as the owner.
--
-- Per-schema default privileges cannot take back what was granted globally (see the schema
-- migration), so each object revokes explicitly after its creation; this migration does it
-- for every sequence there is, and the security tests check every relation kind for misses
-- on a database migrated under such defaults.

DO $$
DECLARE
  v_seq regclass;
BEGIN
  FOR v_seq IN
    SELECT c.oid::regclass FROM pg_catalog.pg_class c
    WHERE c.relnamespace = 'tally'::regnamespace AND c.relkind = 'S'
  LOOP
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM PUBLIC, anon, authenticated, service_role', v_seq);
  END LOOP;
END
$$;

-- Entries a DBA may have made for schema tally itself are taken back for what Tally creates.
ALTER DEFAULT PRIVILEGES IN SCHEMA tally REVOKE ALL ON SEQUENCES FROM PUBLIC, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA tally REVOKE ALL ON TABLES FROM PUBLIC, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA tally REVOKE ALL ON FUNCTIONS FROM PUBLIC, anon, authenticated, service_role;

-- The auth.users shim (only when Tally created it: on Supabase the real table is left
-- alone) revoked from PUBLIC only, so default privileges left the API roles TRUNCATE,
-- REFERENCES and TRIGGER, which RLS does not filter. No API role needs any of it: Tally's
-- functions read it as the owner, and an app fills it with its own role (docs/supabase.md).
DO $$
BEGIN
  IF pg_catalog.obj_description('auth.users'::regclass, 'pg_class') LIKE '%created by Tally%' THEN
    REVOKE ALL ON TABLE auth.users FROM PUBLIC, anon, authenticated, service_role;
  END IF;
END
$$;
