/**
 * The `tally` command line. Exit codes: 0 ok, 1 the work failed, 2 bad usage (an
 * unknown or invalid option or environment variable: one line on stderr, no stack).
 */
import fs from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import pg from 'pg';
import { z } from 'zod';
import { loadConfig } from './config.ts';
import { resolveDatabase, type ResolvedDatabase } from './database.ts';
import { TallyError, UsageError, errorMessage } from './errors.ts';
import { importFile } from './import.ts';
import { IMPORT_HELP, formatImportSummary, importProgressDisplay } from './import-report.ts';
import { installScript, runMigrations } from './migrate.ts';
import { formatStatus, readStatus } from './status.ts';
import { foldPending, formatRollupSummary, recomputeRange, rollupProgressDisplay } from './rollup-command.ts';
import { SCHEDULE_HELP, changeSchedule, formatScheduleChange, formatScheduleList, listSchedules, type ScheduleAction } from './schedule-command.ts';
import { formatVerify, verifyRollups } from './verify.ts';
import { startWorker } from './worker.ts';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

const log = (line: string) => process.stderr.write(`tally: ${line}\n`);

/** Parses a command's options with its zod schema; the first problem becomes a UsageError. */
function parseOptions<T extends z.ZodType>(schema: T, raw: unknown): z.infer<T> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const flag = issue?.path.map((p) => `--${String(p).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(' ');
    throw new UsageError(`${flag ? `${flag}: ` : ''}${issue?.message ?? 'invalid option'}`);
  }
  return parsed.data;
}

const seconds = (name: string, max: number) =>
  z
    .string()
    .regex(/^\d+$/, `${name} must be a whole number of seconds`)
    .transform(Number)
    .pipe(z.number().min(1, `${name} must be at least 1 second`).max(max, `${name} must be at most ${max} seconds`));

const migrateOptions = z.strictObject({ verbose: z.boolean().optional() });
const sqlOptions = z.strictObject({
  transaction: z.boolean().default(true),
  output: z.string().min(1, 'needs a file path').optional(),
});
const runOptions = z.strictObject({
  shutdownTimeout: seconds('shutdown timeout', 3600).default(30),
  verbose: z.boolean().optional(),
});
const statusOptions = z.strictObject({ json: z.boolean().optional() });
const scheduleOptions = statusOptions;
const instant = (name: string) =>
  z.iso
    .datetime({ offset: true, error: `${name} must be an ISO 8601 time with an offset, e.g. 2026-11-01T00:00:00Z` })
    .transform((v) => new Date(v));
const verifyOptions = z
  .strictObject({ from: instant('--from').optional(), to: instant('--to').optional(), json: z.boolean().optional() })
  .transform((o) => {
    const to = o.to ?? new Date();
    return { ...o, to, from: o.from ?? new Date(to.getTime() - 7 * 86_400_000) };
  })
  .refine((o) => o.from < o.to, { message: 'must be earlier than --to', path: ['from'] });
const rollupOptions = z
  .strictObject({
    from: instant('--from').optional(),
    to: instant('--to').optional(),
    recompute: z.boolean().optional(),
    chunk: z
      .string()
      .regex(/^\d+$/, 'must be a whole number of events')
      .transform(Number)
      .pipe(z.number().min(1000, 'must be at least 1000').max(100_000_000, 'must be at most 100000000'))
      .default(500_000),
    json: z.boolean().optional(),
    progress: z.boolean().default(true),
  })
  .refine((o) => o.recompute || (o.from === undefined && o.to === undefined), { message: 'only with --recompute (folding takes what is pending)', path: ['from'] })
  .transform((o) => {
    const to = o.to ?? new Date();
    return { ...o, to, from: o.from ?? new Date(to.getTime() - 7 * 86_400_000) };
  })
  .refine((o) => o.from < o.to, { message: 'must be earlier than --to', path: ['from'] });
const importOptions = z.strictObject({
  format: z.enum(['ndjson', 'csv'], { error: 'must be ndjson or csv' }).optional(),
  chunkSize: z
    .string()
    .regex(/^\d+$/, 'must be a whole number of rows')
    .transform(Number)
    .pipe(z.number().min(1, 'must be at least 1 row').max(100_000, 'must be at most 100000 rows'))
    .optional(),
  jobs: z
    .string()
    .regex(/^\d+$/, 'must be a whole number of sessions')
    .transform(Number)
    .pipe(z.number().min(1, 'must be at least 1').max(16, 'must be at most 16'))
    .default(2),
  source: z.string().min(1, 'needs a label').max(500, 'must be at most 500 characters').optional(),
  json: z.boolean().optional(),
  strict: z.boolean().optional(),
  progress: z.boolean().default(true),
});

async function withDatabase<T>(verbose: boolean | undefined, fn: (db: ResolvedDatabase) => Promise<T>): Promise<T> {
  const db = await resolveDatabase(loadConfig(), verbose ? log : undefined);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** Resolves on the first SIGINT/SIGTERM; a second one exits at once. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      const force = () => {
        log('second signal: exiting without waiting');
        process.exit(130);
      };
      process.once('SIGINT', force);
      process.once('SIGTERM', force);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

async function runService(options: z.infer<typeof runOptions>, migrate: boolean): Promise<void> {
  const signal = untilSignal();
  await withDatabase(true, async (db) => {
    let version: number;
    if (migrate) {
      const result = await runMigrations(db.connectionString, options.verbose ? log : undefined);
      if (result.applied.length > 0) log(`applied ${result.applied.length} migration(s): ${result.applied.map((m) => m.name).join(', ')}`);
      version = result.version;
    } else {
      const status = await readStatus(db.connectionString);
      if (status.schemaVersion === undefined || status.pendingMigrations > 0) {
        throw new TallyError(
          'schema_outdated',
          `schema is ${status.schemaVersion === undefined ? 'not installed' : `at version ${status.schemaVersion}, ${status.pendingMigrations} migration(s) pending`}: run \`tally migrate\` first`,
        );
      }
      version = status.schemaVersion;
    }
    const worker = await startWorker({ connectionString: db.connectionString, log });
    const disabled = worker.disabled.length > 0 ? `, ${worker.disabled.length} disabled` : '';
    process.stdout.write(
      `tally: ready · database ${db.description} · schema version ${version} · worker running (${worker.schedules.length} schedule${worker.schedules.length === 1 ? '' : 's'}${disabled}) · Ctrl-C to stop\n`,
    );
    const received = await signal;
    log(`${received}: stopping worker (waiting up to ${options.shutdownTimeout}s for running jobs)`);
    await worker.stop(options.shutdownTimeout * 1000);
    log('worker stopped');
  });
  log('stopped');
}

export function buildProgram(): Command {
  const program = new Command('tally')
    .description(
      'Postgres-native usage metering: install the tally schema, run its scheduled jobs, import events, report their state.\n' +
        'Uses DATABASE_URL when set; otherwise an embedded PostgreSQL with its data in TALLY_DATA_DIR (default .tally/pg).',
    )
    .version(process.env.npm_package_version ?? '0.1.0', '-V, --version')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text.split('\n')[0] + '\n') })
    .addHelpText(
      'after',
      '\nEnvironment:\n' +
        '  DATABASE_URL          postgres:// URL of the server to use (unset: embedded PostgreSQL)\n' +
        '  TALLY_DATA_DIR        data directory of the embedded PostgreSQL (default .tally/pg)\n' +
        '  TALLY_EMBEDDED_PORT   preferred port of the embedded PostgreSQL (default: a free one)\n\n' +
        'Exit codes: 0 ok, 1 the command failed, 2 bad usage.',
    );

  program
    .command('migrate')
    .description('apply pending migrations to the database (safe to run concurrently)')
    .option('--verbose', 'log every step of the migration runner')
    .action(async (raw) => {
      const options = parseOptions(migrateOptions, raw);
      await withDatabase(options.verbose, async (db) => {
        const result = await runMigrations(db.connectionString, options.verbose ? log : undefined);
        process.stdout.write(
          result.applied.length === 0
            ? `schema is up to date at version ${result.version}\n`
            : `applied ${result.applied.length} migration(s) (${result.applied.map((m) => `${m.id} ${m.name}`).join(', ')}); schema version ${result.version}\n`,
        );
      });
    });

  program
    .command('sql')
    .description('print the whole install script (every migration, in order) for psql or a Supabase migrations folder')
    .option('--no-transaction', 'omit BEGIN/COMMIT, for tools that wrap each file in a transaction themselves')
    .option('-o, --output <file>', 'write the script to a file instead of stdout')
    .addHelpText('after', '\nApply with: tally sql | psql -v ON_ERROR_STOP=1 "$DATABASE_URL"\nA later `tally migrate` sees these migrations as applied.')
    .action(async (raw) => {
      const options = parseOptions(sqlOptions, raw);
      const script = await installScript({ transaction: options.transaction });
      if (options.output) fs.writeFileSync(options.output, script);
      else process.stdout.write(script);
    });

  const shutdownOption = () =>
    new Option('--shutdown-timeout <seconds>', 'on SIGINT/SIGTERM, how long to wait for running jobs').default('30');

  program
    .command('start')
    .description('the main job: resolve the database (embedded by default), migrate, run the worker until Ctrl-C')
    .addOption(shutdownOption())
    .option('--verbose', 'log every step of the migration runner')
    .action(async (raw) => runService(parseOptions(runOptions, raw), true));

  program
    .command('worker')
    .description('run only the pg-boss worker and its schedules (the schema must be migrated)')
    .addOption(shutdownOption())
    .option('--verbose', 'log more')
    .action(async (raw) => runService(parseOptions(runOptions, raw), false));

  program
    .command('status')
    .description('print the schema version, the running workers and every schedule with its last run')
    .option('--json', 'print JSON instead of text')
    .action(async (raw) => {
      const options = parseOptions(statusOptions, raw);
      await withDatabase(false, async (db) => {
        const status = await readStatus(db.connectionString);
        process.stdout.write(
          options.json ? JSON.stringify({ database: db.description, ...status }, null, 2) + '\n' : formatStatus(status, db.description) + '\n',
        );
      });
    });

  program
    .command('verify')
    .description('compare the hourly, daily and monthly rollups with the raw events; exit 1 if any bucket differs')
    .option('--from <time>', 'start of the range, ISO 8601 with offset (default: 7 days before --to)')
    .option('--to <time>', 'end of the range, exclusive (default: now)')
    .option('--json', 'print every mismatch as JSON')
    .addHelpText(
      'after',
      '\nEvery bucket that overlaps the range is checked whole, against the events the rollups have\n' +
        'folded (id <= the watermark), metric by metric. At most 400 days per call.\n' +
        'Exit codes: 0 consistent, 1 a bucket differs (each one is listed) or the check failed, 2 bad usage.',
    )
    .action(async (raw) => {
      const options = parseOptions(verifyOptions, raw);
      await withDatabase(false, async (db) => {
        const report = await verifyRollups(db.connectionString, options.from, options.to);
        process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : formatVerify(report) + '\n');
        if (report.mismatches.length > 0) {
          throw new TallyError('rollups_mismatch', `${report.mismatches.length} bucket(s) differ from the raw events`);
        }
      });
    });

  program
    .command('rollup')
    .description('fold the pending events into the rollups now, or with --recompute rebuild a range from the raw events')
    .option('--recompute', 'rebuild every bucket overlapping --from..--to from the raw events (after a reprice, a void or a fix)')
    .option('--from <time>', 'with --recompute: start of the range, ISO 8601 with offset (default: 7 days before --to)')
    .option('--to <time>', 'with --recompute: end of the range, exclusive (default: now)')
    .option('--chunk <events>', 'events per run_rollups call when folding (default 500000)')
    .option('--json', 'print the summary as JSON')
    .option('--no-progress', 'print no progress on stderr')
    .addHelpText(
      'after',
      '\nWithout --recompute it calls tally.run_rollups until nothing is pending (the worker does the same every\n' +
        'rollups.interval; running both is safe: runs never overlap). With --recompute it calls\n' +
        'tally.recompute_rollups a week at a time. Progress: events (or days) done, per second, ETA.\n' +
        'Exit codes: 0 done, 1 failed or stopped by Ctrl-C (finished chunks are kept), 2 bad usage.',
    )
    .action(async (raw) => {
      const options = parseOptions(rollupOptions, raw);
      await withDatabase(false, async (db) => {
        const stop = new AbortController();
        const onSignal = () => (stop.signal.aborted ? process.exit(EXIT_FAILURE) : stop.abort());
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        const progress = options.progress ? rollupProgressDisplay(process.stderr, options.recompute ? 'recomputing' : 'folding') : undefined;
        try {
          const summary = options.recompute
            ? await recomputeRange(db.connectionString, options.from, options.to, (p) => progress?.update(p), stop.signal)
            : await foldPending(db.connectionString, options.chunk, (p) => progress?.update(p), stop.signal);
          progress?.stop();
          process.stdout.write(options.json ? JSON.stringify(summary, null, 2) + '\n' : formatRollupSummary(summary) + '\n');
          if (stop.signal.aborted) throw new TallyError('rollup_stopped', 'stopped before the end; the finished chunks are kept');
        } finally {
          progress?.stop();
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      });
    });

  const schedule = program
    .command('schedule')
    .description("list the scheduled jobs, or override one's schedule (set, disable, enable, reset); kept in tally.job_schedules")
    .addHelpText('after', SCHEDULE_HELP);
  schedule
    .command('list', { isDefault: true })
    .description('every job: its schedule (UTC), source (default, override, disabled), default, next run, last run')
    .option('--json', 'print JSON instead of a table')
    .allowExcessArguments() // as the default command, `tally schedule bogus` lands here: refused below
    .action(async (raw, command: Command) => {
      const options = parseOptions(scheduleOptions, raw);
      const [unknown] = command.args;
      if (unknown !== undefined) throw new UsageError(`unknown schedule command ${JSON.stringify(unknown)}; the commands are list, set, disable, enable, reset`);
      await withDatabase(false, async (db) => {
        const list = await listSchedules(db.connectionString);
        process.stdout.write(options.json ? JSON.stringify(list, null, 2) + '\n' : formatScheduleList(list) + '\n');
      });
    });
  const change = (action: ScheduleAction, description: string, help: string, withValue = false) => {
    const command = schedule.command(action).description(description).argument('<job>', 'the job, e.g. tally-heartbeat (`tally schedule list` lists them)');
    if (withValue) command.argument('<schedule>', "a quoted five-field cron, UTC ('*/5 * * * *'); for tally-rollups an interval (5s, '30 seconds')");
    command
      .option('--json', 'print the change as JSON')
      .addHelpText('after', help)
      // extra arguments are refused below, in one line that says why they happen
      .allowExcessArguments(withValue)
      .action(async (job: string, ...rest: unknown[]) => {
        const value = withValue ? (rest[0] as string) : undefined;
        const options = parseOptions(scheduleOptions, rest[withValue ? 1 : 0]);
        const given = (rest.at(-1) as Command).args.length;
        if (given > 2) {
          throw new UsageError(`expected JOB and one SCHEDULE, got ${given} arguments: quote the cron ('*/5 * * * *'); unquoted, the shell splits it and expands its stars`);
        }
        await withDatabase(false, async (db) => {
          const result = await changeSchedule(db.connectionString, action, job, value);
          process.stdout.write(options.json ? JSON.stringify(result, null, 2) + '\n' : formatScheduleChange(result) + '\n');
        });
      });
  };
  change(
    'set',
    "override a job's schedule: a cron for the cron jobs, an interval for tally-rollups",
    "\nExamples:\n  tally schedule set tally-heartbeat '*/5 * * * *'     every 5 minutes (UTC)\n" +
      "  tally schedule set tally-retention '30 2 * * *'      02:30 UTC daily\n" +
      '  tally schedule set tally-rollups 5s                  writes the setting rollups.interval (1 s to 1 h)\n' +
      'Quote a cron: unquoted, the shell expands its stars. A disabled job stays disabled.\n' +
      'Running workers follow within a minute (cron) or at their next tick (interval).',
    true,
  );
  change(
    'disable',
    'stop scheduling a job (its override, if any, is kept for enable)',
    '\nThe job is no longer scheduled (running workers stop within a minute; the interval job at its next tick),\n' +
      'but its queue is still worked, so it can still be run by hand. `tally schedule enable JOB` undoes it.',
  );
  change('enable', 'schedule a disabled job again, on its override if it has one, else its default', '\nUndoes `tally schedule disable JOB`.');
  change(
    'reset',
    'back to the default schedule, enabled (for tally-rollups also the default rollups.interval)',
    '\nDeletes the override from tally.job_schedules (and, for tally-rollups, restores the setting rollups.interval).',
  );

  program
    .command('import')
    .description('bulk-load events from an NDJSON or CSV file (- for stdin) with the validation and idempotency of record_events')
    .argument('<file>', 'the file to import, or - to read stdin')
    .addOption(new Option('--format <format>', 'ndjson or csv (default: from the file extension, else from the first byte)'))
    .option('--chunk-size <rows>', 'rows per transaction (default 10000, at most the setting ingest.max_batch)')
    .option('--jobs <n>', 'database sessions validating chunks at once (default 2)')
    .option('--source <label>', "label of this run in tally.rejected_events (default '<file name>@<UTC time>-<4 hex>')")
    .option('--json', 'print the summary as JSON')
    .option('--strict', 'exit with code 1 when any row was rejected')
    .option('--no-progress', 'print no progress on stderr')
    .addHelpText('after', IMPORT_HELP)
    .action(async (file: string, raw) => {
      const options = parseOptions(importOptions, raw);
      if (file !== '-' && !fs.existsSync(file)) throw new UsageError(`${file}: no such file`);
      if (file === '-' && process.stdin.isTTY) log('reading events from the terminal; end with Ctrl-D');
      await withDatabase(false, (db) => runImport(db, file, options));
    });

  return program;
}

async function runImport(db: ResolvedDatabase, file: string, options: z.infer<typeof importOptions>): Promise<void> {
  const pool = new pg.Pool({ connectionString: db.connectionString, application_name: 'tally-import', max: options.jobs });
  pool.on('error', () => undefined);
  try {
    await pool.query('select 1');
  } catch (err) {
    await pool.end();
    throw new TallyError('database_unreachable', `cannot connect to the database: ${errorMessage(err)}`, { cause: err });
  }
  // Ctrl-C stops reading and lets the chunks being validated commit; a second one quits at once.
  const stop = new AbortController();
  const onSignal = () => {
    if (stop.signal.aborted) process.exit(EXIT_FAILURE);
    log('stopping: waiting for the chunks being validated to commit (Ctrl-C again to quit now)');
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const progress = options.progress ? importProgressDisplay(process.stderr) : undefined;
  try {
    const summary = await importFile({
      pool,
      path: file,
      format: options.format,
      chunkSize: options.chunkSize,
      jobs: options.jobs,
      source: options.source,
      signal: stop.signal,
      onProgress: progress ? (p) => progress.update(p) : undefined,
    });
    progress?.stop();
    process.stdout.write(options.json ? JSON.stringify(summary, null, 2) + '\n' : formatImportSummary(summary) + '\n');
    if (!summary.complete) throw new TallyError('import_stopped', 'stopped before the end of the input; run the same command again to import the rest');
    if (options.strict && summary.rejected > 0) throw new TallyError('rows_rejected', `${summary.rejected} row(s) rejected (--strict)`);
  } finally {
    progress?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await pool.end().catch(() => undefined);
  }
}

export async function main(argv: string[] = process.argv): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version requests end here too, with exit code 0.
      return err.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n`);
      return EXIT_USAGE;
    }
    const code = err instanceof TallyError ? ` [${err.code}]` : '';
    process.stderr.write(`error${code}: ${errorMessage(err)}\n`);
    if (process.env.TALLY_DEBUG) console.error(err);
    return EXIT_FAILURE;
  }
}
