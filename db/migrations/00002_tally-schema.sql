-- The tally schema itself. The migration runner creates it (with its bookkeeping table
-- tally.migrations) before the first migration, so that no bookkeeping lands in a
-- schema exposed by Supabase's API.

COMMENT ON SCHEMA tally IS 'Tally: Postgres-native usage metering and usage analytics. Public functions are documented contracts; objects starting with _ are private.';

-- Nothing in tally is reachable by default. Each object grants exactly what it needs;
-- USAGE lets the API roles resolve names, RLS and per-function grants decide the rest.
REVOKE ALL ON SCHEMA tally FROM PUBLIC;
GRANT USAGE ON SCHEMA tally TO anon, authenticated, service_role;

-- Supabase grants new objects to its API roles through default privileges. Revoke them
-- for this schema so a forgotten grant fails closed. (Per-schema default privileges can
-- only subtract what was added per schema; every function below also revokes PUBLIC
-- explicitly, and the security tests check the catalog.)
ALTER DEFAULT PRIVILEGES IN SCHEMA tally REVOKE ALL ON TABLES FROM anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA tally REVOKE ALL ON SEQUENCES FROM anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA tally REVOKE ALL ON FUNCTIONS FROM anon, authenticated, service_role;

ALTER TABLE tally.migrations ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.migrations FROM PUBLIC;
COMMENT ON TABLE tally.migrations IS 'Applied Tally migrations (postgres-migrations bookkeeping): id, name, sha1 of file name and contents, time applied. The highest id is the schema version.';

CREATE FUNCTION tally.schema_version() RETURNS integer
  LANGUAGE sql STABLE
  SECURITY DEFINER
  SET search_path = ''
  AS $$ select max(id) from tally.migrations $$;
COMMENT ON FUNCTION tally.schema_version() IS 'The installed schema version: the id of the newest applied migration. SECURITY DEFINER so callers need no access to the bookkeeping table.';
REVOKE ALL ON FUNCTION tally.schema_version() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tally.schema_version() TO service_role;
