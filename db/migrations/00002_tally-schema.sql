-- The tally schema itself. The migration runner creates it (with its bookkeeping table
-- tally.migrations) before the first migration, so that no bookkeeping lands in a
-- schema exposed by Supabase's API.

COMMENT ON SCHEMA tally IS 'Tally: Postgres-native usage metering and usage analytics. Public functions are documented contracts; objects starting with _ are private.';

-- Nothing in tally is reachable by default. Each object grants exactly what it needs;
-- USAGE lets the API roles resolve names, RLS and per-function grants decide the rest.
REVOKE ALL ON SCHEMA tally FROM PUBLIC;
GRANT USAGE ON SCHEMA tally TO anon, authenticated, service_role;

-- Supabase's default privileges grant every new function and table to anon,
-- authenticated and service_role. Per-schema default privileges cannot take back what was
-- granted globally, so every object in tally revokes explicitly, right after its creation:
--   REVOKE ALL ON ... FROM PUBLIC, anon, authenticated, service_role;
-- and then grants exactly what it needs. The security tests check the catalog for misses.

ALTER TABLE tally.migrations ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.migrations FROM PUBLIC, anon, authenticated, service_role;
COMMENT ON TABLE tally.migrations IS 'Applied Tally migrations (postgres-migrations bookkeeping): id, name, sha1 of file name and contents, time applied. The highest id is the schema version.';

CREATE FUNCTION tally.schema_version() RETURNS integer
  LANGUAGE sql STABLE
  SECURITY DEFINER
  SET search_path = ''
  AS $$ select max(id) from tally.migrations $$;
COMMENT ON FUNCTION tally.schema_version() IS 'The installed schema version: the id of the newest applied migration. SECURITY DEFINER so callers need no access to the bookkeeping table.';
REVOKE ALL ON FUNCTION tally.schema_version() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.schema_version() TO service_role;
