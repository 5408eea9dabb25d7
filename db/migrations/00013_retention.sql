-- Retention: how long each kind of data is kept, as settings, and the daily job that
-- applies them. Raw events go by whole monthly partitions (never row-by-row DELETE); the
-- aggregate tables and the dead letters are small enough to delete by age.

INSERT INTO tally.settings (name, kind, value, default_value, min_value, max_value, description) VALUES
  ('retention.events', 'interval', '400 days', '400 days', '31 days', '100 years',
   'How long raw events are kept: a monthly partition is dropped once all of it is older. Rollups of older periods stay; they can no longer be recomputed or verified.'),
  ('retention.hourly', 'interval', '90 days', '90 days', '1 day', '100 years',
   'How long tally.usage_hourly rows are kept.'),
  ('retention.daily', 'interval', '400 days', '400 days', '1 day', '100 years',
   'How long tally.usage_daily rows are kept. Monthly rows are kept forever.'),
  ('retention.rejected_events', 'interval', '30 days', '30 days', '1 day', '100 years',
   'How long refused items are kept in tally.rejected_events.');

-- The earliest instant whose data of a kind is still kept (events: raw events; hourly,
-- daily: aggregate rows; monthly: always).
CREATE FUNCTION tally._retention_floor(p_kind text) RETURNS timestamptz
  LANGUAGE sql STABLE
  AS $$
    select case p_kind
      when 'monthly' then '-infinity'::timestamptz
      else now() - tally._setting_interval('retention.' || p_kind)
    end
  $$;
COMMENT ON FUNCTION tally._retention_floor(text) IS
  'The earliest time still kept for p_kind (events, hourly, daily, rejected_events; monthly: -infinity), from the retention.* settings.';
REVOKE ALL ON FUNCTION tally._retention_floor(text) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.apply_retention() RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  SET lock_timeout = '10s'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_cutoff    timestamptz := tally._retention_floor('events');
  v_watermark bigint;
  v_part      record;
  v_dropped   text[] := '{}';
  v_kept      text[] := '{}';
  v_voids     bigint := 0;
  v_n         bigint;
  v_unfolded  boolean;
  v_hourly    bigint;
  v_daily     bigint;
  v_rejected  bigint;
BEGIN
  PERFORM tally._require_read_committed('apply_retention');
  -- no rollup runs meanwhile: a partition is dropped only once all of it is folded
  PERFORM pg_advisory_xact_lock(hashtext('tally.run_rollups'));
  v_watermark := (SELECT s.watermark FROM tally.rollup_state s);

  FOR v_part IN
    -- monthly partitions lying wholly before the cutoff (their month ends by then)
    SELECT c.relname, to_timestamp(substring(c.relname FROM 'events_p([0-9]{4}_[0-9]{2})'), 'YYYY_MM') AS month_start
    FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'tally.events'::regclass AND c.relname ~ '^events_p[0-9]{4}_[0-9]{2}$'
    ORDER BY 2
  LOOP
    CONTINUE WHEN v_part.month_start + interval '1 month' > v_cutoff;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM tally.%I WHERE id > $1)', v_part.relname) INTO STRICT v_unfolded USING v_watermark;
    IF v_unfolded THEN
      -- events not folded yet: keep them until the rollups have counted them
      v_kept := v_kept || v_part.relname::text;
      CONTINUE;
    END IF;
    DELETE FROM tally.event_voids v
    WHERE v.occurred_at >= v_part.month_start AND v.occurred_at < v_part.month_start + interval '1 month';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_voids := v_voids + v_n;
    EXECUTE format('DROP TABLE tally.%I', v_part.relname);
    v_dropped := v_dropped || v_part.relname::text;
  END LOOP;

  DELETE FROM tally.usage_hourly u WHERE u.bucket < tally._retention_floor('hourly');
  GET DIAGNOSTICS v_hourly = ROW_COUNT;
  DELETE FROM tally.usage_daily u WHERE u.bucket < tally._retention_floor('daily')::date;
  GET DIAGNOSTICS v_daily = ROW_COUNT;
  DELETE FROM tally.rejected_events r WHERE r.received_at < tally._retention_floor('rejected_events');
  GET DIAGNOSTICS v_rejected = ROW_COUNT;

  RETURN jsonb_build_object(
    'dropped_partitions', to_jsonb(v_dropped), 'kept_unfolded_partitions', to_jsonb(v_kept), 'voids_deleted', v_voids,
    'hourly_deleted', v_hourly, 'daily_deleted', v_daily, 'rejected_deleted', v_rejected, 'events_cutoff', v_cutoff);
END
$$;
COMMENT ON FUNCTION tally.apply_retention() IS
  'Applies the retention.* settings: drops the monthly events partitions that lie wholly before retention.events (never one holding events the rollups have not folded; it is kept and reported), with their voids; deletes hourly and daily rows and rejected items past their retention. Monthly rows are kept. Run daily by the worker. Returns what it removed. Service callers only.';
REVOKE ALL ON FUNCTION tally.apply_retention() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.apply_retention() TO service_role;
