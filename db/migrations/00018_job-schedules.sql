-- Schedule overrides: a DBA moves a scheduled job to another cron, or disables it, without
-- changing code (`tally schedule set|disable|enable|reset`). Only overrides are stored: a
-- job without a row runs on its built-in default (src/schedules.ts). The worker applies the
-- rows when it starts; the CLI also updates a running worker's pg-boss schedule at once.
--
-- The cron syntax is checked by the CLI with the parser pg-boss itself uses (cron-parser),
-- so what Tally accepts is what the worker can run. The CHECK below is only a cheap shape
-- test, so that a hand-written row with a missing or extra field is refused too.
--
-- The interval job (tally-rollups) keeps its period in the setting rollups.interval; here it
-- has at most a row with enabled = false.

CREATE TABLE tally.job_schedules (
  job        text PRIMARY KEY CHECK (job ~ '^[a-z][a-z0-9_-]{0,62}$'),
  cron       text CHECK (cron IS NULL OR (length(cron) <= 200 AND cron ~ '^[ \t]*[^ \t]+([ \t]+[^ \t]+){4}[ \t]*$')),
  enabled    boolean NOT NULL DEFAULT true,
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text NOT NULL DEFAULT current_user
);
COMMENT ON TABLE tally.job_schedules IS
  'Overrides of the scheduled jobs'' built-in schedules, one row per overridden job; no row = the default. Read by the worker at start and by `tally schedule list`. Write with tally.set_job_schedule().';
COMMENT ON COLUMN tally.job_schedules.job IS 'The job (pg-boss queue) name, e.g. tally-heartbeat; the same names as tally.job_runs.';
COMMENT ON COLUMN tally.job_schedules.cron IS 'Five-field cron expression, evaluated in UTC, replacing the job''s default; NULL keeps the default (and always for the interval job tally-rollups, whose period is the setting rollups.interval).';
COMMENT ON COLUMN tally.job_schedules.enabled IS 'false: the worker does not schedule (or, for the interval job, offer) the job. It can still be run by hand.';
COMMENT ON COLUMN tally.job_schedules.updated_at IS 'When the override was last changed.';
COMMENT ON COLUMN tally.job_schedules.updated_by IS 'The role that last changed the override (current_user of that call).';

ALTER TABLE tally.job_schedules ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.job_schedules FROM PUBLIC, anon, authenticated, service_role;
CREATE POLICY job_schedules_service_role ON tally.job_schedules TO service_role USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE tally.job_schedules TO service_role;

-- SECURITY INVOKER: the table grants already let service_role (and the owner) write, so the
-- function needs no rights of its own, and updated_by records the real caller.
CREATE FUNCTION tally.set_job_schedule(p_job text, p_cron text DEFAULT NULL, p_enabled boolean DEFAULT true)
  RETURNS tally.job_schedules
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_row tally.job_schedules;
BEGIN
  IF p_job IS NULL OR p_job !~ '^[a-z][a-z0-9_-]{0,62}$' THEN
    RAISE EXCEPTION 'job: invalid job name %', coalesce(pg_catalog.quote_literal(p_job), 'null')
      USING ERRCODE = '22023', HINT = 'invalid_parameter';
  END IF;
  IF p_cron IS NOT NULL AND (pg_catalog.length(p_cron) > 200 OR p_cron !~ '^[ \t]*[^ \t]+([ \t]+[^ \t]+){4}[ \t]*$') THEN
    RAISE EXCEPTION 'cron: must be five fields (minute hour day-of-month month day-of-week), got %', pg_catalog.quote_literal(p_cron)
      USING ERRCODE = '22023', HINT = 'invalid_parameter';
  END IF;
  IF p_enabled IS NULL THEN
    RAISE EXCEPTION 'enabled: must be true or false' USING ERRCODE = '22023', HINT = 'invalid_parameter';
  END IF;
  -- schedule changes take turns until commit (the CLI and a starting worker take the same
  -- lock before they read the current overrides, so neither acts on a stale one). One lock
  -- for all jobs: changes are rare, and a transaction changing several jobs cannot
  -- deadlock with a worker applying them all.
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('tally.job_schedules'));

  -- the default schedule, enabled, is no override at all: forget the row
  IF p_cron IS NULL AND p_enabled THEN
    DELETE FROM tally.job_schedules s WHERE s.job = p_job;
    RETURN NULL;
  END IF;

  INSERT INTO tally.job_schedules AS s (job, cron, enabled)
  VALUES (p_job, pg_catalog.btrim(p_cron, E' \t'), p_enabled)
  ON CONFLICT (job) DO UPDATE SET
    cron       = excluded.cron,
    enabled    = excluded.enabled,
    updated_at = pg_catalog.now(),
    updated_by = current_user
  RETURNING s.* INTO v_row;
  RETURN v_row;
END
$$;
COMMENT ON FUNCTION tally.set_job_schedule(text, text, boolean) IS
  'Sets a job''s schedule override: p_cron (five fields, UTC; NULL = the default) and p_enabled. Returns the stored row, or NULL when the job is back on its default (the row is deleted). The cron syntax is checked fully by `tally schedule set`; here only its shape. A running worker picks the change up at its next start, or at once when made with `tally schedule`. Errors: invalid_parameter (22023).';
REVOKE ALL ON FUNCTION tally.set_job_schedule(text, text, boolean) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.set_job_schedule(text, text, boolean) TO service_role;

-- Running workers now re-read the interval on every tick (tally schedule set tally-rollups).
UPDATE tally.settings SET description =
  'How often the worker runs tally.run_rollups; running workers re-read it every tick (`tally schedule set tally-rollups 5s`). Reads are exact at any moment anyway; this bounds how much tail they must add.'
WHERE name = 'rollups.interval';
