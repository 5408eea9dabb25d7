/** `tally start` (migrate, then the worker) and `tally worker` (the worker alone), until a signal. */
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { migrationFiles, readSchemaVersion, runMigrations } from '../database/migrate.ts';
import { connectClient } from '../database/resolve.ts';
import { TallyError } from '../errors.ts';
import { startWorker } from '../worker/worker.ts';
import { log, withDatabase } from './context.ts';
import { parseOptions, seconds } from './options.ts';
import { untilSignal } from './signals.ts';

const runOptions = z.strictObject({
  shutdownTimeout: seconds(3600).default(30),
  verbose: z.boolean().optional(),
});

async function readInstalledVersion(connectionString: string): Promise<number | undefined> {
  const client = await connectClient(connectionString, 'tally-worker-start');
  try {
    return await readSchemaVersion(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function runService(options: z.infer<typeof runOptions>, migrate: boolean): Promise<void> {
  const signal = untilSignal();
  await withDatabase({ verbose: true, create: migrate }, async (db) => {
    let version: number;
    if (migrate) {
      const result = await runMigrations(db.connectionString, options.verbose ? log : undefined);
      if (result.applied.length > 0) log(`applied ${result.applied.length} migration(s): ${result.applied.map((m) => m.name).join(', ')}`);
      version = result.version;
    } else {
      // the installed version and the migrations pending, not the whole of `tally status`
      const installed = await readInstalledVersion(db.connectionString);
      const pending = (await migrationFiles()).filter((f) => f.id > (installed ?? 0)).length;
      if (installed === undefined || pending > 0) {
        throw new TallyError(
          'schema_outdated',
          `schema is ${installed === undefined ? 'not installed' : `at version ${installed}, ${pending} migration(s) pending`}: run \`tally migrate\` first`,
        );
      }
      version = installed;
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

export function registerService(program: Command): void {
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
}
