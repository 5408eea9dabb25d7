-- Voided events: mistakes taken out of every aggregate, kept in the ledger for audit.
--
-- An event is never updated or deleted to void it: a row here says who voided it, when
-- and why. The rollups skip voided events, and tally.void_events (with the rollups) rebuilds
-- exactly the buckets a voided event had been counted in.

CREATE TABLE tally.event_voids (
  account_id  uuid NOT NULL,
  event_id    bigint NOT NULL,
  occurred_at timestamptz NOT NULL,
  voided_at   timestamptz NOT NULL DEFAULT now(),
  voided_by   text NOT NULL,
  reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
  PRIMARY KEY (account_id, event_id)
);
COMMENT ON TABLE tally.event_voids IS
  'Events taken out of the aggregates, with who voided them (the database role, and the Supabase user when there is one), when and why. The events themselves stay in tally.events for audit. Written by tally.void_events; members read their accounts'' voids.';

ALTER TABLE tally.event_voids ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.event_voids FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.event_voids TO authenticated, service_role;
CREATE POLICY event_voids_member_read ON tally.event_voids FOR SELECT TO authenticated
  USING (account_id = ANY ((select tally._my_account_ids())::uuid[]));
CREATE POLICY event_voids_service_read ON tally.event_voids FOR SELECT TO service_role USING (true);
