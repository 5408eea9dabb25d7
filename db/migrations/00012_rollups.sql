-- Incremental rollups: hourly (UTC), daily and monthly (in each account's time zone)
-- aggregates of tally.events, folded exactly once by id watermark.
--
-- How a run stays exactly once (see tally.run_rollups for the steps):
--   * The window is the ids (watermark, high], high read from the events identity's
--     sequence. Ids are drawn by the column default while the inserting statement holds
--     RowExclusiveLock on tally.events (or its partition), so an id <= high whose row is not
--     visible yet belongs to a transaction that holds that lock right now.
--   * The run waits for exactly those transactions to end (as pg_incremental does: it
--     polls pg_locks, it never queues a lock request, so new writers are never blocked),
--     then reads the window with a fresh snapshot: every id <= high is committed or gone.
--   * The aggregates are added with INSERT ... ON CONFLICT DO UPDATE and the watermark is
--     moved in the same transaction: a run killed at any point commits both or neither.
--   * Runs are serialized by a transaction-level advisory lock; a second one returns at
--     once without work.

INSERT INTO tally.settings (name, kind, value, default_value, min_value, max_value, description) VALUES
  ('rollups.chunk_events', 'integer', '500000', '500000', '1000', '100000000',
   'Most event ids one tally.run_rollups call folds; a larger backlog takes several calls (the worker loops), so no transaction holds its locks for long.'),
  ('rollups.max_wait', 'interval', '10 seconds', '10 seconds', '0 seconds', '10 minutes',
   'How long tally.run_rollups waits for transactions still inserting events into its window before it gives up this run (and says which ones it waited for).'),
  ('rollups.interval', 'interval', '10 seconds', '10 seconds', '1 second', '1 hour',
   'How often the worker runs tally.run_rollups (read when the worker starts). Reads are exact at any moment anyway; this bounds how much tail they must add.');

-- ---------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------

-- The latency histogram: 42 buckets on a log scale. Bucket 0 holds 0 ms; bucket k (1..40)
-- holds [t(k), t(k+1)) with t = these 41 thresholds, round(2^((k-1)/2)) ms, each 1.5 times
-- the previous at most and sqrt(2) times on average; bucket 41 holds 1482910 ms (about
-- 25 min) and more.
CREATE FUNCTION tally.latency_buckets() RETURNS integer[]
  LANGUAGE sql IMMUTABLE
  AS $$ select '{1,2,3,4,6,8,11,16,23,32,45,64,91,128,181,256,362,512,724,1024,1448,2048,2896,4096,5793,8192,11585,16384,23170,32768,46341,65536,92682,131072,185364,262144,370728,524288,741455,1048576,1482910}'::integer[] $$;
COMMENT ON FUNCTION tally.latency_buckets() IS
  'The lower bounds (ms) of latency histogram buckets 1..41 of the rollups (width_bucket(latency_ms, latency_buckets()) is the slot, 0-based): bucket 0 is [0, 1), bucket k is [bounds[k], bounds[k+1]), bucket 41 is >= 1482910 ms. Adjacent bounds differ by a factor of 1.5 at most, so a percentile read as the geometric middle of its bucket is within about 23 % of the true value (exact to 1 ms below 4 ms).';
REVOKE ALL ON FUNCTION tally.latency_buckets() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.latency_buckets() TO authenticated, service_role;

-- One key for a tuple of dimensions, absent values included: each value is length-prefixed
-- and NULL has its own token, so two different tuples never share a key by construction
-- of the text (and md5 makes a collision of the keys themselves negligible).
CREATE FUNCTION tally._dim_key(p_api_key_id uuid, p_event_type text, p_provider text, p_model text, p_endpoint text, p_file_type text)
  RETURNS uuid
  LANGUAGE sql IMMUTABLE
  AS $$
    select pg_catalog.md5(pg_catalog.concat_ws('|',
      coalesce(p_api_key_id::text, '-'),
      coalesce(pg_catalog.length(p_event_type) || ':' || p_event_type, '-'),
      coalesce(pg_catalog.length(p_provider) || ':' || p_provider, '-'),
      coalesce(pg_catalog.length(p_model) || ':' || p_model, '-'),
      coalesce(pg_catalog.length(p_endpoint) || ':' || p_endpoint, '-'),
      coalesce(pg_catalog.length(p_file_type) || ':' || p_file_type, '-')))::uuid
  $$;
COMMENT ON FUNCTION tally._dim_key(uuid, text, text, text, text, text) IS
  'The key of a dimension tuple (api_key_id, event_type, provider, model, endpoint, file_type) in the rollup tables, absent values included; one row per bucket and key.';
REVOKE ALL ON FUNCTION tally._dim_key(uuid, text, text, text, text, text) FROM PUBLIC, anon, authenticated, service_role;

-- Aggregate: counts per latency bucket into a dense 42-slot histogram.
CREATE FUNCTION tally._hist_sfunc(p_state bigint[], p_bucket integer, p_count bigint) RETURNS bigint[]
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = ''
  AS $$
BEGIN
  IF p_state IS NULL THEN
    p_state := array_fill(0::bigint, ARRAY[42]);
  END IF;
  IF p_bucket BETWEEN 0 AND 41 AND p_count IS NOT NULL THEN
    p_state[p_bucket + 1] := p_state[p_bucket + 1] + p_count;
  END IF;
  RETURN p_state;
END
$$;
COMMENT ON FUNCTION tally._hist_sfunc(bigint[], integer, bigint) IS 'State function of tally._hist_agg: adds p_count to slot p_bucket (0-based, 0..41; anything else is ignored) of a 42-slot histogram.';
REVOKE ALL ON FUNCTION tally._hist_sfunc(bigint[], integer, bigint) FROM PUBLIC, anon, authenticated, service_role;

CREATE AGGREGATE tally._hist_agg(integer, bigint) (SFUNC = tally._hist_sfunc, STYPE = bigint[]);
COMMENT ON AGGREGATE tally._hist_agg(integer, bigint) IS 'Sums (bucket, count) pairs into a dense 42-slot latency histogram.';
REVOKE ALL ON FUNCTION tally._hist_agg(integer, bigint) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally._hist_add(p_a bigint[], p_b bigint[]) RETURNS bigint[]
  LANGUAGE sql IMMUTABLE
  AS $$
    select case when pg_catalog.cardinality(p_a) = 42 and pg_catalog.cardinality(p_b) = 42 then
             (select pg_catalog.array_agg(x + y ORDER BY i)
              from ROWS FROM (pg_catalog.unnest(p_a), pg_catalog.unnest(p_b)) WITH ORDINALITY AS t(x, y, i))
           else coalesce(p_a, p_b) end
  $$;
COMMENT ON FUNCTION tally._hist_add(bigint[], bigint[]) IS 'Adds two 42-slot latency histograms slot by slot (anything else: the first non-null one unchanged).';
REVOKE ALL ON FUNCTION tally._hist_add(bigint[], bigint[]) FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- State and aggregate tables
-- ---------------------------------------------------------------------------------------

CREATE TABLE tally.rollup_state (
  id                boolean PRIMARY KEY DEFAULT true CHECK (id),
  watermark         bigint NOT NULL DEFAULT 0 CHECK (watermark >= 0),
  last_started_at   timestamptz,
  last_finished_at  timestamptz,
  last_duration_ms  numeric,
  last_events       bigint,
  last_high         bigint,
  last_waited_for   integer[],
  runs              bigint NOT NULL DEFAULT 0
);
INSERT INTO tally.rollup_state DEFAULT VALUES;
COMMENT ON TABLE tally.rollup_state IS
  'The one row of rollup bookkeeping: every event id <= watermark is folded into usage_hourly, usage_daily and usage_monthly, and no id above it is. Moved only by tally.run_rollups, in the transaction that writes the aggregates.';

ALTER TABLE tally.rollup_state ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.rollup_state FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.rollup_state TO service_role;
CREATE POLICY rollup_state_service_read ON tally.rollup_state FOR SELECT TO service_role USING (true);

CREATE TABLE tally.usage_hourly (
  account_id          uuid NOT NULL,
  bucket              timestamptz NOT NULL,
  dim_key             uuid NOT NULL,
  api_key_id          uuid,
  event_type          text NOT NULL,
  provider            text,
  model               text,
  endpoint            text,
  file_type           text,
  requests            bigint NOT NULL,
  successful          bigint NOT NULL,
  failed              bigint NOT NULL,
  cached              bigint NOT NULL,
  files               numeric NOT NULL,
  bytes               numeric NOT NULL,
  tokens_in           numeric NOT NULL,
  tokens_out          numeric NOT NULL,
  cost_usd            numeric NOT NULL,
  potential_cost_usd  numeric NOT NULL,
  quantity            numeric NOT NULL,
  latency_count       bigint NOT NULL,
  latency_sum         numeric NOT NULL,
  latency_max         integer,
  latency_hist        bigint[] NOT NULL CHECK (cardinality(latency_hist) = 42),
  PRIMARY KEY (account_id, bucket, dim_key)
);
COMMENT ON TABLE tally.usage_hourly IS
  'Usage per UTC hour (bucket = the hour''s start) and dimension tuple (api_key_id, event_type, provider, model, endpoint, file_type; NULL = absent). Sums of the events'' metrics; latency_hist counts events per tally.latency_buckets() bucket. Written only by tally.run_rollups; members read their accounts'' rows.';

CREATE TABLE tally.usage_daily (LIKE tally.usage_hourly INCLUDING CONSTRAINTS);
ALTER TABLE tally.usage_daily ALTER COLUMN bucket TYPE date;
ALTER TABLE tally.usage_daily ADD PRIMARY KEY (account_id, bucket, dim_key);
COMMENT ON TABLE tally.usage_daily IS
  'Usage per calendar day in the account''s time zone (bucket = the local date) and dimension tuple; the same metrics as tally.usage_hourly.';

CREATE TABLE tally.usage_monthly (LIKE tally.usage_hourly INCLUDING CONSTRAINTS);
ALTER TABLE tally.usage_monthly ALTER COLUMN bucket TYPE date;
ALTER TABLE tally.usage_monthly ADD PRIMARY KEY (account_id, bucket, dim_key);
COMMENT ON TABLE tally.usage_monthly IS
  'Usage per calendar month in the account''s time zone (bucket = the first local day of the month) and dimension tuple; the same metrics as tally.usage_hourly.';

ALTER TABLE tally.usage_hourly ENABLE ROW LEVEL SECURITY;
ALTER TABLE tally.usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE tally.usage_monthly ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.usage_hourly, tally.usage_daily, tally.usage_monthly FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.usage_hourly, tally.usage_daily, tally.usage_monthly TO authenticated, service_role;
CREATE POLICY usage_hourly_member_read ON tally.usage_hourly FOR SELECT TO authenticated
  USING (account_id = ANY ((select tally._my_account_ids())::uuid[]));
CREATE POLICY usage_hourly_service_read ON tally.usage_hourly FOR SELECT TO service_role USING (true);
CREATE POLICY usage_daily_member_read ON tally.usage_daily FOR SELECT TO authenticated
  USING (account_id = ANY ((select tally._my_account_ids())::uuid[]));
CREATE POLICY usage_daily_service_read ON tally.usage_daily FOR SELECT TO service_role USING (true);
CREATE POLICY usage_monthly_member_read ON tally.usage_monthly FOR SELECT TO authenticated
  USING (account_id = ANY ((select tally._my_account_ids())::uuid[]));
CREATE POLICY usage_monthly_service_read ON tally.usage_monthly FOR SELECT TO service_role USING (true);

-- ---------------------------------------------------------------------------------------
-- The run
-- ---------------------------------------------------------------------------------------

-- The transactions (virtual ids) other than the caller's that hold RowExclusiveLock on
-- tally.events or one of its partitions right now; with p_among, only those among them.
-- A transaction keeps its locks until it ends, prepared (two-phase) ones included, so
-- "still holds the lock" is "still running".
CREATE FUNCTION tally._events_writers(p_among text[] DEFAULT NULL) RETURNS text[]
  LANGUAGE sql STABLE
  SET search_path = ''
  AS $$
    select pg_catalog.array_agg(DISTINCT l.virtualtransaction)
    from pg_catalog.pg_locks l
    where l.locktype = 'relation' and l.mode = 'RowExclusiveLock' and l.granted
      and l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
      and (p_among is null or l.virtualtransaction = any (p_among))
      and l.database = (select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database())
      and l.relation in (select 'tally.events'::regclass::oid
                         union all
                         select i.inhrelid from pg_catalog.pg_inherits i where i.inhparent = 'tally.events'::regclass)
  $$;
COMMENT ON FUNCTION tally._events_writers(text[]) IS
  'Virtual transaction ids of the other transactions holding RowExclusiveLock on tally.events or a partition (optionally only those among p_among): the only ones that can own an event id not yet visible.';
REVOKE ALL ON FUNCTION tally._events_writers(text[]) FROM PUBLIC, anon, authenticated, service_role;

-- Rollup functions read the state, then the events, in separate statements: each must
-- see what committed before it began.
CREATE FUNCTION tally._require_read_committed(p_function text) RETURNS void
  LANGUAGE plpgsql STABLE
  SET search_path = ''
  AS $$
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    PERFORM tally._raise('invalid_parameter', '22023',
      format('%s needs READ COMMITTED isolation (this transaction is %s)', p_function, current_setting('transaction_isolation')));
  END IF;
END
$$;
COMMENT ON FUNCTION tally._require_read_committed(text) IS 'Raises invalid_parameter unless the transaction runs at READ COMMITTED.';
REVOKE ALL ON FUNCTION tally._require_read_committed(text) FROM PUBLIC, anon, authenticated, service_role;

-- An account's days and months are cut in its time zone when its events are folded; a
-- later change of zone would leave old buckets cut one way and new ones another, and a
-- rebuild could then count an event twice. So the zone is fixed once usage is folded.
CREATE FUNCTION tally.tg_accounts__lock_timezone() RETURNS trigger
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
BEGIN
  IF NEW.timezone IS DISTINCT FROM OLD.timezone
     AND EXISTS (SELECT 1 FROM tally.usage_daily u WHERE u.account_id = OLD.id) THEN
    PERFORM tally._raise('timezone_locked', '22023',
      format('timezone: account %s already has usage rolled up by day in %s; its calendar cannot change (create a new account for a new time zone)',
             OLD.id, OLD.timezone));
  END IF;
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION tally.tg_accounts__lock_timezone() IS
  'Refuses to change an account''s time zone once it has daily rollups (timezone_locked, 22023): its days and months were cut in the old zone.';
REVOKE ALL ON FUNCTION tally.tg_accounts__lock_timezone() FROM PUBLIC, anon, authenticated, service_role;
CREATE TRIGGER lock_timezone BEFORE UPDATE OF timezone ON tally.accounts
  FOR EACH ROW EXECUTE FUNCTION tally.tg_accounts__lock_timezone();

-- The fold: aggregates a set of events into the given grains with additive upserts, and
-- returns how many events it folded. The set is either the id window (lo, hi] ('window'),
-- or, for rebuilding buckets, the events with id <= hi inside the time ranges given as
-- three parallel arrays (account, from, to) ('ranges'; one grain at a time, so ranges of
-- one account never overlap). Voided events are never folded. No temporary tables: in a
-- SECURITY DEFINER call, an object the caller left in pg_temp would run as the owner.
-- The statement is assembled from the constant pieces below only (no input reaches it):
-- one upsert per grain, the same for all three but for the table and the bucket.
CREATE FUNCTION tally._fold_rollups(p_source text, p_lo bigint, p_hi bigint, p_grains text[],
                                    p_range_accounts uuid[] DEFAULT NULL, p_range_from timestamptz[] DEFAULT NULL,
                                    p_range_to timestamptz[] DEFAULT NULL, p_range_buckets text[] DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql
  SET search_path = ''
  SET jit = off
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_from    text;
  v_where   text;
  v_upserts text;
  v_events  bigint;
BEGIN
  IF p_source = 'window' THEN
    v_from := 'tally.events e JOIN tally.accounts a ON a.id = e.account_id';
    v_where := 'e.id > $1 AND e.id <= $2';
  ELSIF p_source = 'ranges' THEN
    -- the range finds the candidates; the bucket expression of the fold itself decides,
    -- so a local midnight that happens twice (a DST change at 00:00) cannot disagree
    IF cardinality(p_grains) <> 1 THEN
      RAISE EXCEPTION 'ranges fold one grain at a time';
    END IF;
    v_from := 'unnest($3, $4, $5, $6) AS r(account_id, range_from, range_to, bucket)'
              ' JOIN tally.events e ON e.account_id = r.account_id AND e.occurred_at >= r.range_from AND e.occurred_at < r.range_to'
              ' JOIN tally.accounts a ON a.id = e.account_id';
    v_where := 'e.id <= $2 AND ' || CASE p_grains[1]
      WHEN 'hourly' THEN 'date_trunc(''hour'', e.occurred_at, ''UTC'') = r.bucket::timestamptz'
      WHEN 'daily' THEN '(e.occurred_at AT TIME ZONE a.timezone)::date = r.bucket::date'
      ELSE 'date_trunc(''month'', e.occurred_at AT TIME ZONE a.timezone)::date = r.bucket::date' END;
  ELSE
    RAISE EXCEPTION 'unknown fold source %', p_source;
  END IF;

  SELECT string_agg(format($u$,
  %1$s AS (
    INSERT INTO tally.%2$I AS u
    SELECT b.account_id, %3$s, b.dim_key, b.api_key_id, b.event_type, b.provider, b.model, b.endpoint, b.file_type,
           sum(b.requests), sum(b.successful), sum(b.failed), sum(b.cached), sum(b.files), sum(b.bytes), sum(b.tokens_in),
           sum(b.tokens_out), sum(b.cost_usd), sum(b.potential_cost_usd), sum(b.quantity), sum(b.latency_count),
           sum(b.latency_sum), max(b.latency_max), tally._hist_agg(b.lat_bucket, b.latency_count)
    FROM base b
    GROUP BY b.account_id, %3$s, b.dim_key, b.api_key_id, b.event_type, b.provider, b.model, b.endpoint, b.file_type
    ON CONFLICT (account_id, bucket, dim_key) DO UPDATE SET
      requests = u.requests + excluded.requests, successful = u.successful + excluded.successful,
      failed = u.failed + excluded.failed, cached = u.cached + excluded.cached, files = u.files + excluded.files,
      bytes = u.bytes + excluded.bytes, tokens_in = u.tokens_in + excluded.tokens_in,
      tokens_out = u.tokens_out + excluded.tokens_out, cost_usd = u.cost_usd + excluded.cost_usd,
      potential_cost_usd = u.potential_cost_usd + excluded.potential_cost_usd, quantity = u.quantity + excluded.quantity,
      latency_count = u.latency_count + excluded.latency_count, latency_sum = u.latency_sum + excluded.latency_sum,
      latency_max = greatest(u.latency_max, excluded.latency_max),
      latency_hist = tally._hist_add(u.latency_hist, excluded.latency_hist)
    RETURNING 1
  )$u$, g.grain, 'usage_' || g.grain, g.bucket), '' ORDER BY g.ord)
  INTO v_upserts
  FROM (VALUES (1, 'hourly', 'b.hour_utc'),
               (2, 'daily', 'b.local_day'),
               (3, 'monthly', 'date_trunc(''month'', b.local_day)::date')) AS g(ord, grain, bucket)
  WHERE g.grain = ANY (p_grains);
  IF v_upserts IS NULL THEN
    RAISE EXCEPTION 'no known grain in %', p_grains;
  END IF;

  EXECUTE format($q$
  WITH window_events AS (
    -- the events to fold, with their account's time zone
    SELECT e.account_id, e.occurred_at, a.timezone, e.api_key_id, e.event_type, e.provider, e.model, e.endpoint,
           e.file_type, e.success, e.cached, e.files, e.bytes, e.tokens_in, e.tokens_out, e.cost_usd,
           e.potential_cost_usd, e.quantity, e.latency_ms
    FROM %1$s
    WHERE %2$s
      AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
  ),
  base AS MATERIALIZED (
    -- one pass over the events: partial sums per UTC hour x local day x dimensions x
    -- latency bucket (an hour can straddle two local days in zones with :30 or :45 offsets)
    SELECT w.account_id,
           date_trunc('hour', w.occurred_at, 'UTC') AS hour_utc,
           (w.occurred_at AT TIME ZONE w.timezone)::date AS local_day,
           -- computed per group, not per event
           tally._dim_key(w.api_key_id, w.event_type, w.provider, w.model, w.endpoint, w.file_type) AS dim_key,
           w.api_key_id, w.event_type, w.provider, w.model, w.endpoint, w.file_type,
           width_bucket(w.latency_ms, tally.latency_buckets()) AS lat_bucket,
           count(*) AS requests,
           count(*) FILTER (WHERE w.success) AS successful,
           count(*) FILTER (WHERE NOT w.success) AS failed,
           count(*) FILTER (WHERE w.cached) AS cached,
           coalesce(sum(w.files), 0) AS files,
           coalesce(sum(w.bytes), 0) AS bytes,
           coalesce(sum(w.tokens_in), 0) AS tokens_in,
           coalesce(sum(w.tokens_out), 0) AS tokens_out,
           coalesce(sum(w.cost_usd), 0) AS cost_usd,
           coalesce(sum(w.potential_cost_usd), 0) AS potential_cost_usd,
           sum(w.quantity) AS quantity,
           count(w.latency_ms) AS latency_count,
           coalesce(sum(w.latency_ms), 0) AS latency_sum,
           max(w.latency_ms) AS latency_max
    FROM window_events w
    GROUP BY 1, 2, 3, 5, 6, 7, 8, 9, 10, 11
  )%3$s
  SELECT coalesce(sum(b.requests), 0) FROM base b$q$, v_from, v_where, v_upserts)
  INTO v_events
  USING p_lo, p_hi, p_range_accounts, p_range_from, p_range_to, p_range_buckets;
  RETURN v_events;
END
$$;
COMMENT ON FUNCTION tally._fold_rollups(text, bigint, bigint, text[], uuid[], timestamptz[], timestamptz[], text[]) IS
  'Folds events into the given grains (hourly, daily, monthly) with additive upserts and returns how many: the id window (p_lo, p_hi] for source window, or, for source ranges (one grain), the events with id <= p_hi in the given (account, from, to, bucket) rows whose bucket is that bucket. Voided events are skipped.';
REVOKE ALL ON FUNCTION tally._fold_rollups(text, bigint, bigint, text[], uuid[], timestamptz[], timestamptz[], text[]) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.run_rollups(p_max_events bigint DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  SET jit = off
  AS $$
DECLARE
  v_started  timestamptz := clock_timestamp();
  v_state    tally.rollup_state;
  v_last     bigint;
  v_high     bigint;
  v_waiting  text[];
  v_deadline timestamptz;
  v_pids     integer[];
  v_events   bigint;
  v_lock_timeout text;
BEGIN
  IF p_max_events IS NOT NULL AND p_max_events < 1 THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('max_events: must be at least 1 (got %s)', p_max_events));
  END IF;
  PERFORM tally._require_read_committed('run_rollups');
  -- One run at a time; a second caller returns at once.
  IF NOT pg_try_advisory_xact_lock(hashtext('tally.run_rollups')) THEN
    RETURN jsonb_build_object('skipped', true, 'reason', 'another run_rollups is in progress');
  END IF;
  SELECT * INTO v_state FROM tally.rollup_state FOR UPDATE;

  -- 1. The window: (watermark, high], at most the chunk size.
  v_last := pg_sequence_last_value(pg_get_serial_sequence('tally.events', 'id')::regclass);
  IF v_last IS NULL OR v_last <= v_state.watermark THEN
    UPDATE tally.rollup_state SET last_started_at = v_started, last_finished_at = clock_timestamp(),
      last_duration_ms = extract(epoch FROM clock_timestamp() - v_started) * 1000, last_events = 0,
      last_high = v_state.watermark, last_waited_for = NULL, runs = runs + 1;
    RETURN jsonb_build_object('events', 0, 'watermark', v_state.watermark, 'more', false);
  END IF;
  v_high := v_state.watermark + least(v_last - v_state.watermark, coalesce(p_max_events, tally._setting_int('rollups.chunk_events')));

  -- 2. Wait for the transactions that may own an id <= high not visible yet. Writers that
  --    start now draw ids > high (the sequence only grows), so the set only shrinks.
  v_waiting := tally._events_writers();
  v_deadline := clock_timestamp() + tally._setting_interval('rollups.max_wait');
  WHILE v_waiting IS NOT NULL LOOP
    IF clock_timestamp() > v_deadline THEN
      SELECT pg_catalog.array_agg(DISTINCT coalesce(l.pid, 0)) INTO v_pids
      FROM pg_catalog.pg_locks l WHERE l.virtualtransaction = ANY (v_waiting) AND l.locktype = 'relation';
      UPDATE tally.rollup_state SET last_started_at = v_started, last_finished_at = clock_timestamp(),
        last_duration_ms = extract(epoch FROM clock_timestamp() - v_started) * 1000, last_events = 0,
        last_high = v_state.watermark, last_waited_for = v_pids, runs = runs + 1;
      RETURN jsonb_build_object('events', 0, 'watermark', v_state.watermark, 'more', true, 'waiting_for_pids', to_jsonb(v_pids));
    END IF;
    PERFORM pg_sleep(0.01);
    v_waiting := tally._events_writers(v_waiting);
  END LOOP;

  -- 3. Fold the window into the three grains, then move the watermark, in this transaction.
  --    The fold is a new statement with a new snapshot: every id in the window is now
  --    committed or rolled back for good.
  -- Summarize the id index over the pages written since the last run first: unsummarized
  -- BRIN ranges are read whole, and this keeps the window (and the live tail) cheap. It is
  -- an optimisation only: if a VACUUM or the like holds a partition, skip it this time
  -- rather than wait (autosummarize catches up).
  v_lock_timeout := current_setting('lock_timeout');
  PERFORM set_config('lock_timeout', '200ms', true);
  BEGIN
    PERFORM pg_catalog.brin_summarize_new_values(i.inhrelid::regclass)
    FROM pg_catalog.pg_inherits i WHERE i.inhparent = 'tally.events_id_brin'::regclass;
  EXCEPTION WHEN lock_not_available THEN
    NULL;
  END;
  PERFORM set_config('lock_timeout', v_lock_timeout, true);
  v_events := tally._fold_rollups('window', v_state.watermark, v_high, '{hourly,daily,monthly}');

  UPDATE tally.rollup_state SET watermark = v_high, last_started_at = v_started, last_finished_at = clock_timestamp(),
    last_duration_ms = extract(epoch FROM clock_timestamp() - v_started) * 1000, last_events = v_events,
    last_high = v_high, last_waited_for = NULL, runs = runs + 1;
  RETURN jsonb_build_object('events', v_events, 'watermark', v_high, 'more', v_high < v_last);
END
$$;
COMMENT ON FUNCTION tally.run_rollups(bigint) IS
  'Folds the events committed since the watermark (at most p_max_events ids, default setting rollups.chunk_events) into usage_hourly, usage_daily and usage_monthly and moves the watermark, in the caller''s transaction: exactly once even when killed, re-run or started twice (the second call returns {skipped: true}). Waits for transactions still inserting into its window, up to setting rollups.max_wait, else returns {waiting_for_pids}. Returns {events, watermark, more}; more = true means call again. Needs READ COMMITTED. Service callers only.';
REVOKE ALL ON FUNCTION tally.run_rollups(bigint) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.run_rollups(bigint) TO service_role;

CREATE FUNCTION tally.rollup_status() RETURNS jsonb
  LANGUAGE sql STABLE
  SECURITY DEFINER
  SET search_path = ''
  AS $$
    with state as (
      select * from tally.rollup_state
    ),
    pending as (
      -- the events past the watermark: what the next runs will fold (cost: the tail only)
      select count(*) as n, min(e.received_at) as oldest
      from tally.events e, state s
      where e.id > s.watermark
    )
    select jsonb_build_object(
      'watermark', s.watermark,
      'newest_event_id', coalesce(pg_catalog.pg_sequence_last_value(pg_catalog.pg_get_serial_sequence('tally.events', 'id')::regclass), 0),
      'pending_events', p.n,
      'oldest_pending_age_seconds', extract(epoch from now() - p.oldest),
      'last_run_started_at', s.last_started_at,
      'last_run_finished_at', s.last_finished_at,
      'last_run_duration_ms', s.last_duration_ms,
      'last_run_events', s.last_events,
      'last_run_waited_for_pids', to_jsonb(s.last_waited_for),
      'runs', s.runs)
    from state s, pending p
  $$;
COMMENT ON FUNCTION tally.rollup_status() IS
  'Where the rollups stand: watermark, newest event id, pending events (past the watermark) and the age of the oldest, and the last run (time, duration, events, transactions it waited for in vain). A run that fails rolls back and leaves no trace here; the worker records failures in tally.job_runs. Service callers only.';
REVOKE ALL ON FUNCTION tally.rollup_status() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.rollup_status() TO service_role;
