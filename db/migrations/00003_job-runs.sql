-- A record of every scheduled job the worker ran: what, when, how long, and how it ended.
-- The worker (or pg_cron, or a DBA) calls the job's SQL function and then
-- tally.record_job_run(); `tally status` reads this table, so a stalled scheduler is
-- visible even when the jobs themselves have nothing to do.

CREATE TABLE tally.job_runs (
  job              text PRIMARY KEY CHECK (job ~ '^[a-z][a-z0-9_-]{0,62}$'),
  runs             bigint NOT NULL DEFAULT 0 CHECK (runs >= 0),
  failures         bigint NOT NULL DEFAULT 0 CHECK (failures >= 0),
  last_started_at  timestamptz,
  last_finished_at timestamptz,
  last_ok          boolean,
  last_result      jsonb,
  last_error       text
);
COMMENT ON TABLE tally.job_runs IS 'One row per scheduled job: run and failure counts and the outcome of its latest run. Written by tally.record_job_run().';

ALTER TABLE tally.job_runs ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.job_runs FROM PUBLIC, anon, authenticated, service_role;
CREATE POLICY job_runs_service_role ON tally.job_runs TO service_role USING (true) WITH CHECK (true);
GRANT SELECT ON TABLE tally.job_runs TO service_role;

CREATE FUNCTION tally.record_job_run(
  p_job         text,
  p_started_at  timestamptz,
  p_finished_at timestamptz,
  p_ok          boolean,
  p_result      jsonb DEFAULT NULL,
  p_error       text DEFAULT NULL
) RETURNS void
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
BEGIN
  IF p_job IS NULL OR p_job !~ '^[a-z][a-z0-9_-]{0,62}$' THEN
    RAISE EXCEPTION 'invalid job name: %', coalesce(p_job, 'null')
      USING ERRCODE = '22023', HINT = 'invalid_parameter';
  END IF;
  IF p_started_at IS NULL OR p_finished_at IS NULL OR p_finished_at < p_started_at OR p_ok IS NULL THEN
    RAISE EXCEPTION 'job run % needs started_at <= finished_at and ok', p_job
      USING ERRCODE = '22023', HINT = 'invalid_parameter';
  END IF;

  INSERT INTO tally.job_runs AS r (job, runs, failures, last_started_at, last_finished_at, last_ok, last_result, last_error)
  VALUES (p_job, 1, CASE WHEN p_ok THEN 0 ELSE 1 END, p_started_at, p_finished_at, p_ok, p_result, left(p_error, 2000))
  ON CONFLICT (job) DO UPDATE SET
    runs             = r.runs + 1,
    failures         = r.failures + CASE WHEN p_ok THEN 0 ELSE 1 END,
    last_started_at  = excluded.last_started_at,
    last_finished_at = excluded.last_finished_at,
    last_ok          = excluded.last_ok,
    last_result      = excluded.last_result,
    last_error       = excluded.last_error;
END
$$;
COMMENT ON FUNCTION tally.record_job_run(text, timestamptz, timestamptz, boolean, jsonb, text) IS
  'Records one finished run of a scheduled job (ok or failed, with its result or error, kept to 2000 characters). Raises 22023 (invalid_parameter) for a bad job name or times.';
REVOKE ALL ON FUNCTION tally.record_job_run(text, timestamptz, timestamptz, boolean, jsonb, text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.record_job_run(text, timestamptz, timestamptz, boolean, jsonb, text) TO service_role;

CREATE FUNCTION tally.heartbeat() RETURNS jsonb
  LANGUAGE sql STABLE
  SET search_path = ''
  AS $$
    select jsonb_build_object(
      'at', now(),
      'schema_version', tally.schema_version(),
      'server_version', current_setting('server_version')
    )
  $$;
COMMENT ON FUNCTION tally.heartbeat() IS
  'The job the worker schedules every minute: proves the scheduler, the worker and the database are all alive. Returns the time, the schema version and the server version.';
REVOKE ALL ON FUNCTION tally.heartbeat() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.heartbeat() TO service_role;
