-- Partition maintenance leaves the ledger fast to read at once, and imports can create the
-- partitions their rows need.
--
-- 1. No dead rows left behind. Moving history out of events_default is a DELETE from it:
--    until (auto)vacuum ran, every read that scanned the default partition (events_tail(),
--    and so every *_live view) waded through the dead tuples, 777 ms instead of 11 ms after
--    10M moved rows. VACUUM cannot run inside a function or a transaction, so when a move
--    leaves the default partition empty, it is TRUNCATEd in the same transaction: its file
--    is replaced by an empty one, no dead tuple is left, and no VACUUM is needed.
--
--    Why this is safe with concurrent work:
--    * locks: it adds none. The transaction already holds ACCESS EXCLUSIVE on
--      events_default once it has attached a partition (ATTACH PARTITION takes it, to check
--      and change the default partition's constraint), so TRUNCATE neither waits nor makes
--      anyone wait longer than the move already does.
--    * writers: an insert routed to events_default waits for the move, as before, then lands
--      in the (empty) default partition or, failing its new constraint, is retried by
--      _ingest into the new partition. Inserts into other months never touch
--      events_default and never wait.
--    * readers: TRUNCATE is not MVCC-safe. A statement whose snapshot predates the commit
--      but that reaches events_default only after it (it queued behind the move's lock)
--      sees neither the moved rows (in the new partition, committed after its snapshot)
--      nor the old ones, where without the truncation it would have seen the old ones.
--      The rollups, which must never miss an event, are kept out: the truncation happens
--      only if the rollups' lock is free (pg_try_advisory_xact_lock), which is then held
--      to commit, so no run_rollups / void / recompute / reprice / retention statement
--      reads meanwhile, and the next one takes its snapshot after the commit. When a
--      rollup is running, the default partition is left as it was (dead tuples left to
--      autovacuum, reported as default_truncated: false; the next move truncates it).
--      What remains: a transaction that took its snapshot before the commit and reads
--      tally.events after it misses the moved rows. A READ COMMITTED statement that queued
--      behind the move's lock takes its execution snapshot after the lock, so it sees
--      them, but a REPEATABLE READ or SERIALIZABLE transaction begun before the commit does
--      not see them for the rest of its life (a fresh transaction does). The window is
--      the time from the first attach to the commit, which follows at once in
--      ensure_partitions; do not call it inside a long transaction.
-- 2. tally.ensure_partitions_for(p_from, p_to): creates the monthly partitions of a range
--    (only months within retention and not in the future beyond the allowed skew), moving
--    rows waiting in the default partition for them. `tally import` calls it for each
--    chunk, with the range of its rows' dates, before loading it, so imported history goes
--    straight to its partition instead of waiting in the default one.

-- Truncates events_default when it holds no row (after moves), if that can be done at once
-- and safely; true when it did.
CREATE FUNCTION tally._truncate_empty_default_partition() RETURNS boolean
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  SET lock_timeout = '1s'
  AS $$
BEGIN
  -- no rollup reads the ledger until this transaction commits (see the file's header)
  IF NOT pg_try_advisory_xact_lock(hashtext('tally.run_rollups')) THEN
    RETURN false;
  END IF;
  -- held already after an attach; bounded anyway, and not worth a stall if not granted
  BEGIN
    LOCK TABLE tally.events_default IN ACCESS EXCLUSIVE MODE;
  EXCEPTION WHEN lock_not_available THEN
    RETURN false;
  END;
  IF EXISTS (SELECT 1 FROM tally.events_default) THEN
    RETURN false;
  END IF;
  TRUNCATE tally.events_default;
  RETURN true;
END
$$;
COMMENT ON FUNCTION tally._truncate_empty_default_partition() IS
  'After rows were moved out of tally.events_default: truncates it when it is empty and the rollups'' lock is free (its ACCESS EXCLUSIVE lock is already held after an attach), so no dead tuple slows the reads that scan it. Returns whether it truncated.';
REVOKE ALL ON FUNCTION tally._truncate_empty_default_partition() FROM PUBLIC, anon, authenticated, service_role;

CREATE OR REPLACE FUNCTION tally.ensure_partitions(p_months_ahead integer DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET lock_timeout = '10s'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_ahead     integer := coalesce(p_months_ahead, tally._setting_int('partitions.months_ahead'));
  v_month     timestamptz;
  v_moved     bigint;
  v_total     bigint := 0;
  v_created   text[] := '{}';
  v_truncated boolean := false;
BEGIN
  IF v_ahead IS NULL OR v_ahead < 0 OR v_ahead > 120 THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('months_ahead: must be between 0 and 120 (got %s)', p_months_ahead));
  END IF;
  -- One DDL run at a time; a second caller waits, then finds the work done.
  PERFORM pg_advisory_xact_lock(hashtext('tally.ensure_partitions'));
  FOR v_month IN
    -- this month and the months ahead ...
    SELECT m FROM generate_series(date_trunc('month', now(), 'UTC'),
                                  date_trunc('month', now(), 'UTC') + make_interval(months => v_ahead),
                                  interval '1 month') AS m
    UNION
    -- ... and every month that has events waiting in the default partition (late or
    -- far-future events, imports of history).
    SELECT DISTINCT date_trunc('month', d.occurred_at, 'UTC') FROM tally.events_default d
    ORDER BY 1
  LOOP
    v_moved := tally._create_events_partition(v_month);
    IF v_moved IS NOT NULL THEN
      v_created := v_created || ('events_p' || to_char(v_month, 'YYYY_MM'));
      v_total := v_total + v_moved;
    END IF;
  END LOOP;
  IF v_total > 0 THEN
    -- the moves left dead tuples behind: leave none
    v_truncated := tally._truncate_empty_default_partition();
  END IF;
  RETURN jsonb_build_object(
    'created', to_jsonb(v_created),
    'moved_rows', v_total,
    'default_rows', (SELECT count(*) FROM tally.events_default),
    'default_truncated', v_truncated);
END
$$;
COMMENT ON FUNCTION tally.ensure_partitions(integer) IS
  'Creates the monthly events partitions for this month and the next p_months_ahead (default: setting partitions.months_ahead), plus one for every month with rows in events_default, moving those rows; when that empties events_default it is truncated in the same transaction, so no dead tuple slows later reads (default_truncated; false when a running rollup prevented it, and autovacuum then cleans up). Idempotent; run daily by the worker. Returns {created: [partition names], moved_rows, default_rows, default_truncated}. Service callers only.';
REVOKE ALL ON FUNCTION tally.ensure_partitions(integer) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.ensure_partitions(integer) TO service_role;

CREATE FUNCTION tally.ensure_partitions_for(p_from timestamptz, p_to timestamptz) RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET lock_timeout = '10s'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  -- only months ingestion would accept events of: within retention, not beyond the skew
  v_from      timestamptz := greatest(p_from, tally._retention_floor('events'));
  v_to        timestamptz := least(p_to, now() + tally._setting_interval('ingest.max_future_skew'));
  v_months    timestamptz[];
  v_month     timestamptz;
  v_moved     bigint;
  v_total     bigint := 0;
  v_created   text[] := '{}';
  v_truncated boolean := false;
BEGIN
  IF NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', '42501', 'ensure_partitions_for: service callers only');
  END IF;
  IF p_from IS NULL OR p_to IS NULL OR p_from > p_to OR p_from = '-infinity' OR p_to = 'infinity' THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('from, to: need finite from <= to (got %s, %s)', p_from, p_to));
  END IF;
  IF v_from <= v_to THEN
    SELECT array_agg(m ORDER BY m) INTO v_months
    FROM generate_series(date_trunc('month', v_from, 'UTC'), date_trunc('month', v_to, 'UTC'), interval '1 month') AS m
    WHERE to_regclass(format('tally.%I', 'events_p' || to_char(m, 'YYYY_MM'))) IS NULL;
  END IF;
  IF v_months IS NULL THEN
    -- the common case: every partition exists, no lock taken
    RETURN jsonb_build_object('created', '[]'::jsonb, 'moved_rows', 0, 'default_truncated', false);
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('tally.ensure_partitions'));
  FOREACH v_month IN ARRAY v_months LOOP
    v_moved := tally._create_events_partition(v_month);
    IF v_moved IS NOT NULL THEN
      v_created := v_created || ('events_p' || to_char(v_month, 'YYYY_MM'));
      v_total := v_total + v_moved;
    END IF;
  END LOOP;
  IF v_total > 0 THEN
    v_truncated := tally._truncate_empty_default_partition();
  END IF;
  RETURN jsonb_build_object('created', to_jsonb(v_created), 'moved_rows', v_total, 'default_truncated', v_truncated);
END
$$;
COMMENT ON FUNCTION tally.ensure_partitions_for(timestamptz, timestamptz) IS
  'Creates the monthly events partitions (UTC months) overlapping [p_from, p_to], clipped to what ingestion accepts (not before retention.events, not beyond ingest.max_future_skew), so events of that range do not wait in events_default. Rows already waiting in events_default for those months are moved (and events_default truncated if that empties it, as ensure_partitions does). Takes no lock when every partition exists. Called by `tally import` for each chunk, with the range of its rows'' dates. Returns {created, moved_rows, default_truncated}. Service callers only.';
REVOKE ALL ON FUNCTION tally.ensure_partitions_for(timestamptz, timestamptz) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.ensure_partitions_for(timestamptz, timestamptz) TO service_role;
