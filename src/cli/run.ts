/**
 * `tally run JOB`: runs one scheduled job now, as the worker would (even a disabled one),
 * records the run in tally.job_runs and prints its result.
 */
import type { Command } from 'commander';
import { toTallyError } from '../client/errors.ts';
import { TallyError } from '../errors.ts';
import { SCHEDULED_JOBS } from '../worker/jobs.ts';
import { runJobNow } from '../worker/worker.ts';
import { withDatabase } from './context.ts';
import { jsonOnly, parseOptions } from './options.ts';
import { findJob } from './schedule.ts';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run a scheduled job now (even a disabled one) and print its result; the run is recorded like a scheduled one')
    .argument('<job>', `one of: ${SCHEDULED_JOBS.map((j) => j.name).join(', ')}`)
    .option('--json', 'print {job, ok, elapsedMs, result} as JSON')
    .addHelpText(
      'after',
      '\nThe jobs (tally schedule list shows when each runs):\n' +
        SCHEDULED_JOBS.map((j) => `  ${j.name.padEnd(30)} ${j.description}`).join('\n') +
        '\n\nIt calls the same SQL as the worker (e.g. tally-rollups: select tally.run_rollups(), again while it\n' +
        'reports more) and records the outcome in tally.job_runs, so `tally status` shows it as the last run.\n' +
        'Running it while the worker runs the same job is safe: every job is idempotent.\n' +
        'Exit codes: 0 the job succeeded, 1 it failed (its code, e.g. rollups_mismatch), 2 bad usage (unknown job).',
    )
    .action(async (name: string, raw) => {
      const options = parseOptions(jsonOnly, raw);
      const job = findJob(name);
      await withDatabase({ schema: true }, async (db) => {
        const started = Date.now();
        let result: unknown;
        try {
          result = await runJobNow(db.connectionString, job);
        } catch (err) {
          const e = toTallyError(err);
          const code = e.code === 'database_error' || e.code === 'client_error' ? 'job_failed' : e.code;
          throw new TallyError(code, `${job.name} failed: ${e.message}`, { cause: err });
        }
        const elapsedMs = Date.now() - started;
        process.stdout.write(
          options.json
            ? JSON.stringify({ job: job.name, ok: true, elapsedMs, result }, null, 2) + '\n'
            : `${job.name}: ok in ${elapsedMs} ms\n${JSON.stringify(result, null, 2)}\n`,
        );
      });
    });
}
