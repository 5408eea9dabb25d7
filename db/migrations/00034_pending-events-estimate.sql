-- tally.pending_events_estimate(): how many events at most wait past the rollups'
-- watermark, without scanning them, for progress displays (`tally rollup`).
--
-- It reads the events' id sequence (pg_sequence_last_value), a node-local primitive, so it
-- lives in this one named function, as DESIGN's Citus rules ask; it runs as its owner, since
-- no API role may read the sequence. Ids drawn by rolled-back inserts count too: an upper
-- bound. tally.rollup_status() gives the exact count, at the cost of a scan of the tail.

CREATE FUNCTION tally.pending_events_estimate() RETURNS bigint
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  IF NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', 'pending_events_estimate: service callers only');
  END IF;
  RETURN greatest(0,
    coalesce(pg_catalog.pg_sequence_last_value(pg_catalog.pg_get_serial_sequence('tally.events', 'id')::pg_catalog.regclass), 0)
    - (SELECT s.watermark FROM tally.rollup_state s));
END
$$;
COMMENT ON FUNCTION tally.pending_events_estimate() IS
  'An upper bound of the events past the rollups'' watermark, read from the events'' id sequence without scanning them (ids of rolled-back inserts count too): for progress displays. tally.rollup_status() counts them exactly. Service callers only.';
REVOKE ALL ON FUNCTION tally.pending_events_estimate() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.pending_events_estimate() TO service_role;
