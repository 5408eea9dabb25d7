-- Ingestion guards: no silent $0, no event accepted only to be dropped, no silent reuse of
-- an idempotency key.
--
-- Three new outcomes for an item that passed the validator (tally._parse_events):
--
--   past_retention        occurred_at is older than the setting retention.events: the next
--                         tally.apply_retention() would drop it, so it is refused now
--                         (the same code recompute_rollups / verify_rollups use for a range
--                         past retention)
--   unpriced_model        only with the setting ingest.refuse_unpriced_models = 1: the item
--                         carries tokens, Tally had to price it (no cost_usd given, or a
--                         cached call without potential_cost_usd) and tally.model_prices has
--                         no price for its (provider, model) at its occurred_at
--   idempotency_conflict  the item's idempotency key was already used by an event with a
--                         different payload: the first event is kept, as before, and the item
--                         is reported in the result's `conflicts` (not as a duplicate) and
--                         kept in tally.rejected_events with the stored event's id
--
-- Comparing payloads costs one 64-bit hash per keyed item: tally.idempotency_keys keeps the
-- hash of the canonical validated payload (the typed values as given: timestamps as epoch
-- numbers, money at its stored scale, properties as jsonb, so key order, spacing, "10" vs
-- 10 and time zone spelling do not matter; values Tally filled in, such as a defaulted
-- occurred_at or a computed cost, are left out). A key claimed before this migration has
-- no hash, and a retry of it stays a plain duplicate. A hash collision (2^-64) would report
-- a conflict as a duplicate, which is what happened before.

INSERT INTO tally.settings (name, kind, value, default_value, min_value, max_value, description) VALUES
  ('ingest.refuse_unpriced_models', 'integer', '0', '0', '0', '1',
   '1: refuse (code unpriced_model) an LLM event Tally must price (tokens, no cost given) when tally.model_prices has no price for its provider and model at occurred_at; 0 (default): accept it with a NULL cost.');

-- the new codes in the one error table (idempotency_conflict is recorded, never raised: its
-- SQLSTATE is the conflict class it would be raised with)
INSERT INTO tally.error_codes (code, sqlstate, description) VALUES
  ('unpriced_model',       '22023', 'With ingest.refuse_unpriced_models = 1: an LLM event Tally must price has no price for its provider and model at occurred_at.'),
  ('idempotency_conflict', '23505', 'An item''s idempotency key was already used by an event with a different payload: that event is kept, the item is not stored (reported in conflicts, kept in rejected_events).');
UPDATE tally.error_codes SET description = 'A rollup range whose raw events are past retention.events; or an event whose occurred_at is older than retention.events (refused at ingest).'
WHERE code = 'past_retention';

ALTER TABLE tally.idempotency_keys ADD COLUMN payload_fingerprint bigint;
COMMENT ON COLUMN tally.idempotency_keys.payload_fingerprint IS
  'Hash of the canonical validated payload of the event that claimed the key (NULL for keys claimed before payloads were compared): a retry with another hash is an idempotency_conflict.';

-- Stores what _parse_events accepted and dead-letters the rest, in one statement; then,
-- only when some keyed items were not stored, tells duplicates from conflicts in a second
-- statement (which also sees keys committed by concurrent writers that the first waited for).
-- Planner settings, pinned for this statement:
--  * enable_nestloop off: the planner cannot know how many items a JSON array holds (it
--    guesses 100, and far fewer after filters) and would join claimed keys to items with a
--    nested loop, quadratic in the batch size. Hash joins are right for every join here.
--  * jit off: the validator is one very large expression; compiling it costs seconds and
--    would be paid on every call, for a statement that runs in milliseconds.
--  * plpgsql with a forced generic plan: planning this statement costs milliseconds. A SQL
--    function would plan it again on every call, and plpgsql would too (a custom plan per
--    call) unless told to keep one plan for the session; the estimates do not depend on the
--    array's contents anyway.
CREATE OR REPLACE FUNCTION tally._ingest(p_events jsonb, p_source text, p_index_base bigint DEFAULT 0) RETURNS jsonb
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  SET enable_nestloop = off
  SET jit = off
  SET plan_cache_mode = force_generic_plan
  AS $$
DECLARE
  v_result    jsonb;
  v_dups      jsonb;
  v_conflicts jsonb;
  v_attempt   integer;
BEGIN
  -- Two attempts: an insert routed to events_default that waited while ensure_partitions
  -- attached the partition for its month fails the default partition's new constraint
  -- (23514). Nothing of the attempt survives (its subtransaction rolls back), and the next
  -- statement routes the rows to the new partition.
  FOR v_attempt IN 1..2 LOOP
  BEGIN
  WITH guards AS MATERIALIZED (
    -- the settings, read once per call
    -- (one probe of tally.settings for both; events_floor is tally._retention_floor('events'))
    SELECT now() - r.retention AS events_floor, r.retention AS events_retention, coalesce(r.refuse, 0) = 1 AS refuse_unpriced
    FROM (SELECT max(s.value) FILTER (WHERE s.name = 'retention.events')::interval AS retention,
                 max(s.value) FILTER (WHERE s.name = 'ingest.refuse_unpriced_models')::integer AS refuse
          FROM tally.settings s WHERE s.name IN ('retention.events', 'ingest.refuse_unpriced_models')) r
  ),
  checked AS (
    -- the validator's outcome, then the guards on what it accepted
    SELECT p.*,
           CASE
             WHEN p.code IS NOT NULL THEN NULL
             -- a guard refuses only a new item: the retry of a stored event (its key
             -- claimed already) is a duplicate or a conflict below, whatever changed since
             WHEN p.occurred_at < g.events_floor AND NOT (p.idempotency_key IS NOT NULL AND EXISTS (
                    SELECT 1 FROM tally.idempotency_keys k WHERE k.account_id = p.account_id AND k.idempotency_key = p.idempotency_key))
               THEN format('past_retention|occurred_at: %s is older than the retention of raw events (setting retention.events = %s): it would be dropped by the next retention run',
                           p.payload ->> 'occurred_at', g.events_retention)
             WHEN g.refuse_unpriced AND (p.tokens_in IS NOT NULL OR p.tokens_out IS NOT NULL)
                  AND ((NOT p.cost_given AND p.cost_usd IS NULL) OR (p.cached AND NOT p.potential_cost_given AND p.potential_cost_usd IS NULL))
                  AND NOT (p.idempotency_key IS NOT NULL AND EXISTS (
                    SELECT 1 FROM tally.idempotency_keys k WHERE k.account_id = p.account_id AND k.idempotency_key = p.idempotency_key))
               THEN format('unpriced_model|model: no price for provider %s, model %s at %s in tally.model_prices (setting ingest.refuse_unpriced_models); give cost_usd or set the price',
                           coalesce(quote_literal(p.provider), 'NULL'), coalesce(quote_literal(p.model), 'NULL'), p.occurred_at)
           END AS guard
    FROM tally._parse_events(p_events, p_index_base) p CROSS JOIN guards g
  ),
  parsed AS MATERIALIZED (
    SELECT c.item_index, c.payload, c.known_account_id, c.account_id, c.occurred_at, c.api_key_id, c.event_type,
           c.provider, c.model, c.endpoint, c.method, c.status_code, c.success, c.error_message, c.file_type,
           c.files, c.bytes, c.tokens_in, c.tokens_out, c.cached, c.cost_usd, c.potential_cost_usd, c.cost_given,
           c.potential_cost_given, c.latency_ms, c.quantity, c.idempotency_key, c.properties,
           coalesce(c.code, split_part(c.guard, '|', 1)) AS code,
           coalesce(c.message, substr(c.guard, strpos(c.guard, '|') + 1)) AS message,
           -- the canonical validated payload of a keyed item, hashed (see the file's header)
           CASE WHEN c.code IS NULL AND c.guard IS NULL AND c.idempotency_key IS NOT NULL THEN
             hashtextextended(ROW(
               c.api_key_id, CASE WHEN jsonb_typeof(c.payload -> 'occurred_at') = 'string' THEN extract(epoch FROM c.occurred_at) END,
               c.event_type, c.provider, c.model, c.endpoint, c.method, c.status_code, c.success, c.error_message,
               c.file_type, c.files, c.bytes, c.tokens_in, c.tokens_out, c.cached,
               CASE WHEN c.cost_given THEN c.cost_usd END, CASE WHEN c.potential_cost_given THEN c.potential_cost_usd END,
               c.latency_ms, c.quantity, c.properties)::text, 0)
           END AS payload_fingerprint
    FROM checked c
  ),
  dead AS (
    -- nothing is lost: every refused item is kept as sent, once per idempotency key (a
    -- retry of a batch whose reply was lost refuses the same items again)
    INSERT INTO tally.rejected_events (account_id, source, item_index, code, message, payload, idempotency_key)
    SELECT p.known_account_id, p_source, p.item_index, p.code, p.message, p.payload,
           CASE WHEN jsonb_typeof(p.payload -> 'idempotency_key') = 'string'
                 AND length(p.payload ->> 'idempotency_key') BETWEEN 1 AND 255
                THEN p.payload ->> 'idempotency_key' END
    FROM parsed p WHERE p.code IS NOT NULL
    ORDER BY 1, 7  -- the unique index's order, so concurrent calls never deadlock on it
    ON CONFLICT (source, account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  ),
  first_of_key AS (
    -- within the batch, the first item carrying a key wins; later ones are duplicates
    SELECT DISTINCT ON (p.account_id, p.idempotency_key) p.item_index, p.account_id, p.idempotency_key, p.occurred_at, p.payload_fingerprint
    FROM parsed p
    WHERE p.code IS NULL AND p.idempotency_key IS NOT NULL
    ORDER BY p.account_id, p.idempotency_key, p.item_index
  ),
  claimed AS (
    -- keys not seen before. A key inserted by a transaction still in flight makes this wait
    -- for it: if it commits, the key is a duplicate here; if it rolls back, it is ours.
    -- Sorted, so two batches sharing keys lock them in the same order.
    INSERT INTO tally.idempotency_keys (account_id, idempotency_key, occurred_at, payload_fingerprint)
    SELECT f.account_id, f.idempotency_key, f.occurred_at, f.payload_fingerprint FROM first_of_key f
    ORDER BY f.account_id, f.idempotency_key
    ON CONFLICT DO NOTHING
    RETURNING account_id, idempotency_key
  ),
  kept AS (
    -- the keyed items that claimed their key
    SELECT f.item_index FROM first_of_key f
    JOIN claimed c ON c.account_id = f.account_id AND c.idempotency_key = f.idempotency_key
  ),
  stored AS (
    INSERT INTO tally.events (
      account_id, occurred_at, api_key_id, event_type, provider, model, endpoint, method, status_code,
      success, error_message, file_type, files, bytes, tokens_in, tokens_out, cached, cost_usd,
      potential_cost_usd, cost_given, potential_cost_given, latency_ms, quantity, idempotency_key, properties)
    SELECT p.account_id, p.occurred_at, p.api_key_id, p.event_type, p.provider, p.model, p.endpoint, p.method, p.status_code,
           p.success, p.error_message, p.file_type, p.files, p.bytes, p.tokens_in, p.tokens_out, p.cached, p.cost_usd,
           p.potential_cost_usd, p.cost_given, p.potential_cost_given, p.latency_ms, p.quantity, p.idempotency_key, p.properties
    FROM parsed p
    WHERE p.code IS NULL
      AND (p.idempotency_key IS NULL OR p.item_index IN (SELECT k.item_index FROM kept k))
    ORDER BY p.item_index
    RETURNING 1
  )
  SELECT jsonb_build_object(
    'accepted',   (SELECT count(*) FROM stored),
    'rejected',   coalesce((SELECT jsonb_agg(jsonb_build_object('index', p.item_index, 'code', p.code, 'message', p.message)
                                             ORDER BY p.item_index) FROM parsed p WHERE p.code IS NOT NULL), '[]'::jsonb)),
    -- the valid keyed items not stored: duplicates or conflicts
    (SELECT jsonb_agg(jsonb_build_object('index', p.item_index, 'account_id', p.account_id, 'key', p.idempotency_key,
                                         'hash', p.payload_fingerprint, 'payload', p.payload))
     FROM parsed p
     WHERE p.code IS NULL AND p.idempotency_key IS NOT NULL AND p.item_index NOT IN (SELECT k.item_index FROM kept k))
  INTO v_result, v_dups;

  IF v_dups IS NOT NULL THEN
    -- a not-stored item whose payload differs from the one that claimed its key (seen now,
    -- including a claim committed by a concurrent writer the statement above waited for)
    WITH conflict AS (
      SELECT d.index, d.account_id, d.key, d.payload, ev.id AS event_id,
             format('idempotency_key: %L was already used by event %s with a different payload; that event is kept and this item was not stored',
                    d.key, coalesce(ev.id::text, '(no longer stored)')) AS message
      FROM jsonb_to_recordset(v_dups) AS d(index bigint, account_id uuid, key text, hash bigint, payload jsonb)
      JOIN tally.idempotency_keys k ON k.account_id = d.account_id AND k.idempotency_key = d.key
      LEFT JOIN LATERAL (
        SELECT e.id FROM tally.events e
        WHERE e.account_id = k.account_id AND e.occurred_at = k.occurred_at AND e.idempotency_key = k.idempotency_key
        ORDER BY e.id LIMIT 1
      ) ev ON true
      WHERE k.payload_fingerprint IS NOT NULL AND k.payload_fingerprint <> d.hash
    ),
    kept_conflict AS (
      -- kept like every refusal, once per key and source
      INSERT INTO tally.rejected_events (account_id, source, item_index, code, message, payload, idempotency_key)
      SELECT c.account_id, p_source, c.index, 'idempotency_conflict', c.message, c.payload, c.key
      FROM conflict c
      ORDER BY 1, 7
      ON CONFLICT (source, account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    )
    SELECT jsonb_agg(jsonb_build_object('index', c.index, 'code', 'idempotency_conflict', 'message', c.message,
                                        'event_id', c.event_id::text) ORDER BY c.index)
    INTO v_conflicts FROM conflict c;
  END IF;

  RETURN v_result || jsonb_build_object(
    'duplicates', coalesce(jsonb_array_length(v_dups), 0) - coalesce(jsonb_array_length(v_conflicts), 0),
    'conflicts', coalesce(v_conflicts, '[]'::jsonb));
  EXCEPTION WHEN check_violation THEN
    IF v_attempt = 2 THEN
      RAISE;
    END IF;
  END;
  END LOOP;
END
$$;
COMMENT ON FUNCTION tally._ingest(jsonb, text, bigint) IS
  'Validates and stores a JSON array of events: valid items once per idempotency key, refused items (validator codes, past_retention, unpriced_model) into tally.rejected_events (source p_source); a keyed item whose key was used with another payload is an idempotency_conflict (kept there too, with the stored event''s id). Returns {accepted, duplicates, conflicts: [{index, code, message, event_id}], rejected: [{index, code, message}]}.';
REVOKE ALL ON FUNCTION tally._ingest(jsonb, text, bigint) FROM PUBLIC, anon, authenticated, service_role;

COMMENT ON FUNCTION tally.record_events(jsonb) IS
  'Records a JSON array of events (at most the setting ingest.max_batch, default 10000) set-based. Valid items are stored once per (account, idempotency_key); invalid items are refused one by one and kept in tally.rejected_events (including past_retention, and unpriced_model when ingest.refuse_unpriced_models is 1). A key reused with a different payload keeps the first event and is reported in conflicts (code idempotency_conflict, with the stored event_id), not as a duplicate. Returns {accepted, duplicates, conflicts: [{index, code, message, event_id}], rejected: [{index, code, message}]} with 0-based array indexes. Raises invalid_parameter or batch_too_large (22023) only for the array itself. Service callers only.';
COMMENT ON FUNCTION tally.import_events(jsonb, text, bigint) IS
  'record_events for bulk loaders such as `tally import`: the same validation, guards and idempotency (result {accepted, duplicates, conflicts, rejected}), with rejected items kept under source ''import:<p_source>'' and indexed from p_first_index (the line number of the first item). Service callers only.';

-- record_event gains a `conflict` column, so it is dropped and created again.
DROP FUNCTION tally.record_event(jsonb);
CREATE FUNCTION tally.record_event(p_event jsonb)
  RETURNS TABLE (event_id bigint, duplicate boolean, conflict boolean)
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET jit = off
  SET plan_cache_mode = force_generic_plan
  AS $$
DECLARE
  v_result  jsonb;
  v_account uuid;
  v_key     text := p_event ->> 'idempotency_key';
  v_when    timestamptz;
BEGIN
  v_result := tally._ingest(jsonb_build_array(p_event), 'record_event', 0);
  IF jsonb_array_length(v_result -> 'rejected') > 0 THEN
    -- raising also undoes the dead letter _ingest wrote: the caller has the error instead
    PERFORM tally._raise(v_result->'rejected'->0->>'code', tally._reject_sqlstate(v_result->'rejected'->0->>'code'),
                         v_result->'rejected'->0->>'message');
  ELSIF (v_result->>'accepted')::int = 1 THEN
    -- this session drew exactly one id from the events identity just now
    RETURN QUERY SELECT currval(pg_get_serial_sequence('tally.events', 'id')), false, false;
  ELSIF jsonb_array_length(v_result -> 'conflicts') > 0 THEN
    -- the key was used with another payload: the stored event is kept (and the conflict
    -- stays in tally.rejected_events, source record_event)
    RETURN QUERY SELECT (v_result->'conflicts'->0->>'event_id')::bigint, true, true;
  ELSE
    -- a duplicate: the event is valid, so its tenant fields are well-formed UUIDs
    v_account := coalesce((p_event ->> 'account_id')::uuid,
                          (SELECT k.account_id FROM tally.api_keys k WHERE k.id = (p_event ->> 'api_key_id')::uuid));
    SELECT k.occurred_at INTO v_when FROM tally.idempotency_keys k
    WHERE k.account_id = v_account AND k.idempotency_key = v_key;
    RETURN QUERY
      SELECT e.id, true, false FROM tally.events e
      WHERE e.account_id = v_account AND e.occurred_at = v_when AND e.idempotency_key = v_key
      ORDER BY e.id LIMIT 1;
  END IF;
END
$$;
COMMENT ON FUNCTION tally.record_event(jsonb) IS
  'Records one event and returns (event_id, duplicate, conflict). A duplicate idempotency key returns the original event''s id with duplicate = true; a key already used with a different payload also returns the original id, with duplicate = conflict = true, and keeps the item in tally.rejected_events (idempotency_conflict). An invalid event raises (nothing is stored; the caller has the error): SQLSTATE 22023 with the code in HINT (invalid_type, out_of_range, past_retention, unpriced_model, ...), 28000 for unknown_api_key / revoked_api_key / expired_api_key, P0002 for account_not_found. Usable inside the caller''s own transaction. Service callers only.';
REVOKE ALL ON FUNCTION tally.record_event(jsonb) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.record_event(jsonb) TO service_role;
