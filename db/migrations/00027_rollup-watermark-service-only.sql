-- tally.rollup_watermark() is for service callers only.
--
-- The watermark is the id of the last event folded into the aggregates. Ids come from one
-- sequence shared by every tenant, so the watermark tells its reader how many events all
-- tenants together have recorded. Members never need it: what they read is the live views,
-- and the live views need only the events past the watermark that the member may see.
--
-- So tally.events_tail(), which the live views call, reads the watermark itself: it now runs
-- as its owner (SECURITY DEFINER) and applies to a caller whom row-level security filters
-- (not a service, not BYPASSRLS, not the table's owner) exactly the filter of the member
-- policy on tally.events (account_id among tally._my_account_ids()).
-- A member sees the same tail as before; the watermark never reaches them.

CREATE OR REPLACE FUNCTION tally.events_tail() RETURNS SETOF tally.events
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  -- The watermark is put into the statement as a constant, so the planner sees how few ids
  -- lie above it and reads them through the id index, whatever the history behind.
  -- A caller whom row-level security would not filter either (a service, a BYPASSRLS role,
  -- the owner of tally.events) gets every event of the tail, as a direct read would give it.
  IF tally._caller_is_service()
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = tally._caller_role() AND r.rolbypassrls)
     OR pg_catalog.pg_has_role(tally._caller_role(),
          (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'tally.events'::pg_catalog.regclass), 'MEMBER') THEN
    RETURN QUERY EXECUTE format(
      'SELECT e.* FROM tally.events e WHERE e.id > %s
         AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)',
      tally.rollup_watermark());
  ELSE
    -- the member policy of tally.events (events_member_read), applied here because the
    -- owner bypasses row-level security
    RETURN QUERY EXECUTE format(
      'SELECT e.* FROM tally.events e WHERE e.id > %s AND e.account_id = ANY ($1)
         AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)',
      tally.rollup_watermark())
      USING tally._my_account_ids();
  END IF;
END
$$;
COMMENT ON FUNCTION tally.events_tail() IS
  'The events the rollups have not folded yet (id above the watermark, not voided): all of them for a caller row-level security does not filter (a service, a BYPASSRLS role, the owner of tally.events), those of the caller''s accounts (tally._my_account_ids()) for anyone else, as the member policy on tally.events allows. Runs as its owner so the watermark stays private.';
REVOKE ALL ON FUNCTION tally.events_tail() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.events_tail() TO authenticated, service_role;

REVOKE ALL ON FUNCTION tally.rollup_watermark() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.rollup_watermark() TO service_role;
COMMENT ON FUNCTION tally.rollup_watermark() IS
  'The rollups'' watermark: events with a higher id are not in usage_hourly/daily/monthly yet (the *_live views add them). Service callers only: it reveals the event count of all tenants together.';
