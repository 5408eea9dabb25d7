-- Every Tally function that pins its search_path now pins `pg_catalog, pg_temp` instead of
-- an empty one.
--
-- Why: with search_path = '', PostgreSQL still searches the session's temporary schema
-- first for relations and types. A caller could create, say, a domain pg_temp.text whose
-- CHECK calls the caller's own function; a SECURITY DEFINER function declaring a text
-- variable would then run that function with the owner's rights. Listing pg_temp
-- explicitly, and last, closes that door (as PostgreSQL's documentation on writing
-- SECURITY DEFINER functions advises). Functions added by later migrations declare
-- SET search_path = pg_catalog, pg_temp themselves; the security tests check all of them.
DO $$
DECLARE
  v_fn regprocedure;
BEGIN
  FOR v_fn IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
    WHERE p.pronamespace = 'tally'::regnamespace
      AND EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')
  LOOP
    EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', v_fn);
  END LOOP;
END
$$;
