-- The events ledger: append-only, range-partitioned by occurred_at (one partition per UTC
-- month), with a default partition so that no event is ever refused for lack of one.
--
-- Written only by the ingestion functions (next migrations); the API never updates or
-- deletes an event. Idempotency keys live in their own table (a unique index on a
-- partitioned table would have to include occurred_at) and are claimed in the same
-- transaction as the event they belong to, so a crash can never claim a key without its
-- event. Items that cannot become events are kept in tally.rejected_events.

CREATE TABLE tally.events (
  account_id          uuid NOT NULL,
  occurred_at         timestamptz NOT NULL,
  -- Drawn by the column default while the INSERT holds its lock on the table: the rollups
  -- (next issue) rely on that to close their id window safely. Never draw it by hand.
  id                  bigint GENERATED ALWAYS AS IDENTITY,
  received_at         timestamptz NOT NULL DEFAULT now(),
  api_key_id          uuid,
  event_type          text NOT NULL,
  provider            text,
  model               text,
  endpoint            text,
  method              text,
  status_code         smallint CHECK (status_code BETWEEN 100 AND 599),
  success             boolean NOT NULL,
  error_message       text,
  file_type           text,
  files               bigint CHECK (files >= 0),
  bytes               bigint CHECK (bytes >= 0),
  tokens_in           bigint CHECK (tokens_in >= 0),
  tokens_out          bigint CHECK (tokens_out >= 0),
  cached              boolean NOT NULL DEFAULT false,
  cost_usd            numeric(24, 12) CHECK (cost_usd >= 0),
  potential_cost_usd  numeric(24, 12) CHECK (potential_cost_usd >= 0),
  cost_given          boolean NOT NULL DEFAULT false,
  potential_cost_given boolean NOT NULL DEFAULT false,
  latency_ms          integer CHECK (latency_ms >= 0),
  quantity            numeric(24, 12) NOT NULL DEFAULT 1 CHECK (quantity >= 0),
  idempotency_key     text,
  properties          jsonb,
  PRIMARY KEY (account_id, occurred_at, id)
) PARTITION BY RANGE (occurred_at);
-- Rollups read windows of ids; rows are appended in id order within a partition, so a
-- BRIN index finds a window for a fraction of a btree's insert cost.
CREATE INDEX events_id_brin ON tally.events USING brin (id) WITH (pages_per_range = 32, autosummarize = on);

COMMENT ON TABLE tally.events IS
  'The usage ledger: one row per billable thing that happened. Append-only (written by tally.record_events, tally.record_event, tally.import_events and attached meters), range-partitioned by occurred_at per UTC month. Members read their accounts'' events.';
COMMENT ON COLUMN tally.events.id IS 'Monotonic identity drawn when the row is inserted; the rollups fold events by id window.';
COMMENT ON COLUMN tally.events.success IS 'Given, or derived: status_code < 400 when a status is given, else no error_message.';
COMMENT ON COLUMN tally.events.cost_usd IS 'Given by the caller, or computed from tally.model_prices at occurred_at (0 for a cached call).';
COMMENT ON COLUMN tally.events.potential_cost_usd IS 'What the call would have cost without the cache: given, else the computed price, else cost_usd. Savings = potential_cost_usd - cost_usd.';
COMMENT ON COLUMN tally.events.cost_given IS 'True when the caller gave cost_usd; tally.reprice only recomputes costs it computed itself.';
COMMENT ON COLUMN tally.events.potential_cost_given IS 'True when the caller gave potential_cost_usd.';
COMMENT ON COLUMN tally.events.quantity IS 'Billable units of the event (default 1).';

CREATE TABLE tally.events_default PARTITION OF tally.events DEFAULT;
COMMENT ON TABLE tally.events_default IS
  'Catch-all partition for events outside every monthly partition. tally.ensure_partitions() moves its rows into proper partitions; tally status reports how many wait here.';

ALTER TABLE tally.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE tally.events_default ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.events, tally.events_default FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.events TO authenticated, service_role;
CREATE POLICY events_member_read ON tally.events FOR SELECT TO authenticated
  USING (account_id = ANY ((select tally._my_account_ids())::uuid[]));
CREATE POLICY events_service_read ON tally.events FOR SELECT TO service_role USING (true);

-- ---------------------------------------------------------------------------------------
-- Idempotency keys
-- ---------------------------------------------------------------------------------------

CREATE TABLE tally.idempotency_keys (
  account_id      uuid NOT NULL,
  idempotency_key text NOT NULL,
  occurred_at     timestamptz NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created_brin ON tally.idempotency_keys USING brin (created_at) WITH (autosummarize = on);
COMMENT ON TABLE tally.idempotency_keys IS
  'Idempotency keys seen per account in the retention window (setting ingest.idempotency_retention), with the occurred_at of the event that claimed each one. Claimed in the same transaction as that event; purged by tally.purge_idempotency_keys().';

ALTER TABLE tally.idempotency_keys ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.idempotency_keys FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.idempotency_keys TO service_role;
CREATE POLICY idempotency_keys_service_read ON tally.idempotency_keys FOR SELECT TO service_role USING (true);

-- ---------------------------------------------------------------------------------------
-- Dead letters
-- ---------------------------------------------------------------------------------------

CREATE TABLE tally.rejected_events (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id  uuid,
  received_at timestamptz NOT NULL DEFAULT now(),
  source      text NOT NULL,
  item_index  bigint,
  code        text NOT NULL,
  message     text NOT NULL,
  payload     jsonb NOT NULL,
  -- the item's idempotency key, when it carried a usable one: a retried batch (its reply
  -- was lost) refuses the same item again, and it is kept once
  idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255)
);
CREATE UNIQUE INDEX rejected_events_retry_key ON tally.rejected_events (source, account_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX rejected_events_account_idx ON tally.rejected_events (account_id, received_at) WHERE account_id IS NOT NULL;
CREATE INDEX rejected_events_source_idx ON tally.rejected_events (source, item_index);
COMMENT ON TABLE tally.rejected_events IS
  'Every item ingestion refused, exactly as it was sent, with the stable code and the message naming the field. source says where it came from (record_events, import:<label>, meter:<table>); item_index is its position there (array index, or line number for imports). account_id is set when the item named a known account or key. An item with an idempotency key and a known account is kept once per source, however often a retry refuses it again.';

ALTER TABLE tally.rejected_events ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.rejected_events FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.rejected_events TO authenticated, service_role;
CREATE POLICY rejected_events_member_read ON tally.rejected_events FOR SELECT TO authenticated
  USING (account_id = ANY ((select tally._my_account_ids())::uuid[]));
CREATE POLICY rejected_events_service_read ON tally.rejected_events FOR SELECT TO service_role USING (true);

-- ---------------------------------------------------------------------------------------
-- Partition maintenance
-- ---------------------------------------------------------------------------------------

-- Creates the partition for one UTC month as a standalone table, moves the rows already
-- sitting in the default partition for that month into it, then attaches it.
-- Why this way: CREATE TABLE ... PARTITION OF fails when the default partition holds rows of
-- the range, and it takes an ACCESS EXCLUSIVE lock on tally.events; ATTACH PARTITION needs
-- only SHARE UPDATE EXCLUSIVE on the parent, so ingestion into other months never waits.
-- Locks are taken parent first, then the default partition, the order inserters use.
-- TimeZone is pinned to UTC: month arithmetic on timestamptz follows the session's zone,
-- and under a zone with daylight saving time the bounds would drift by an hour, leaving
-- gaps between partitions or making them overlap.
CREATE FUNCTION tally._create_events_partition(p_month timestamptz) RETURNS bigint
  LANGUAGE plpgsql
  SET search_path = ''
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_from  timestamptz := date_trunc('month', p_month, 'UTC');
  v_to    timestamptz := date_trunc('month', p_month, 'UTC') + interval '1 month';
  v_name  text := 'events_p' || to_char(p_month AT TIME ZONE 'UTC', 'YYYY_MM');
  v_moved bigint := 0;
BEGIN
  IF to_regclass(format('tally.%I', v_name)) IS NOT NULL THEN
    RETURN NULL;
  END IF;
  LOCK TABLE tally.events IN SHARE UPDATE EXCLUSIVE MODE;
  -- Writers of this month wait for the moment of the move instead of landing behind it.
  LOCK TABLE tally.events_default IN SHARE ROW EXCLUSIVE MODE;
  EXECUTE format('CREATE TABLE tally.%I (LIKE tally.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', v_name);
  EXECUTE format(
    'WITH moved AS (DELETE FROM tally.events_default d WHERE d.occurred_at >= $1 AND d.occurred_at < $2 RETURNING d.*)
     INSERT INTO tally.%I SELECT * FROM moved', v_name) USING v_from, v_to;
  GET DIAGNOSTICS v_moved = ROW_COUNT;
  EXECUTE format('ALTER TABLE tally.%I ENABLE ROW LEVEL SECURITY', v_name);
  EXECUTE format('REVOKE ALL ON TABLE tally.%I FROM PUBLIC, anon, authenticated, service_role', v_name);
  EXECUTE format('ALTER TABLE tally.events ATTACH PARTITION tally.%I FOR VALUES FROM (%L) TO (%L)', v_name, v_from, v_to);
  EXECUTE format('COMMENT ON TABLE tally.%I IS %L', v_name,
    format('Events that occurred in %s (UTC). A partition of tally.events, created by tally.ensure_partitions(); read it through tally.events.',
           to_char(p_month AT TIME ZONE 'UTC', 'YYYY-MM')));
  RETURN v_moved;
END
$$;
COMMENT ON FUNCTION tally._create_events_partition(timestamptz) IS
  'Creates the events partition of the UTC month containing p_month, moving matching rows out of events_default first; returns how many rows moved, or NULL if it existed.';
REVOKE ALL ON FUNCTION tally._create_events_partition(timestamptz) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.ensure_partitions(p_months_ahead integer DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  SET lock_timeout = '10s'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_ahead   integer := coalesce(p_months_ahead, tally._setting_int('partitions.months_ahead'));
  v_month   timestamptz;
  v_moved   bigint;
  v_total   bigint := 0;
  v_created text[] := '{}';
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
  RETURN jsonb_build_object(
    'created', to_jsonb(v_created),
    'moved_rows', v_total,
    'default_rows', (SELECT count(*) FROM tally.events_default));
END
$$;
COMMENT ON FUNCTION tally.ensure_partitions(integer) IS
  'Creates the monthly events partitions for this month and the next p_months_ahead (default: setting partitions.months_ahead), plus one for every month with rows in events_default, moving those rows. Idempotent; run daily by the worker. Returns {created: [partition names], moved_rows, default_rows}. Service callers only.';
REVOKE ALL ON FUNCTION tally.ensure_partitions(integer) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.ensure_partitions(integer) TO service_role;

CREATE FUNCTION tally.purge_idempotency_keys() RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
DECLARE
  v_cutoff  timestamptz := now() - tally._setting_interval('ingest.idempotency_retention');
  v_deleted bigint;
BEGIN
  DELETE FROM tally.idempotency_keys k WHERE k.created_at < v_cutoff;
  GET DIAGNOSTICS v_deleted = ROW_COUNT;
  RETURN jsonb_build_object('deleted', v_deleted, 'cutoff', v_cutoff);
END
$$;
COMMENT ON FUNCTION tally.purge_idempotency_keys() IS
  'Forgets idempotency keys older than the setting ingest.idempotency_retention (default 7 days): a retry after that is no longer recognised as a duplicate. Run daily by the worker. Returns {deleted, cutoff}. Service callers only.';
REVOKE ALL ON FUNCTION tally.purge_idempotency_keys() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.purge_idempotency_keys() TO service_role;

SELECT tally.ensure_partitions();
