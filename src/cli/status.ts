/** `tally status`: schema version, workers, schedules with their last runs, ledger and rollups. */
import type { Command } from 'commander';
import { formatStatus, readStatus } from '../worker/status.ts';
import { loadConfig } from '../database/config.ts';
import { migrationFiles } from '../database/migrate.ts';
import { TallyError } from '../errors.ts';
import { withDatabase } from './context.ts';
import { jsonOnly, parseOptions } from './options.ts';

async function formatNotCreated(dataDir: string, json: boolean): Promise<string> {
  const latestVersion = (await migrationFiles()).at(-1)?.id ?? 0;
  const database = `embedded PostgreSQL, not created yet (no cluster in ${dataDir})`;
  if (json) {
    const status = { database, embeddedCreated: false, dataDir, schemaVersion: null, latestVersion, pendingMigrations: latestVersion, workers: [], jobs: [] };
    return JSON.stringify(status, null, 2) + '\n';
  }
  return [
    `database:  ${database}`,
    `schema:    not installed (\`tally start\` creates the database and installs the schema; or set DATABASE_URL to use an existing server)`,
  ].join('\n') + '\n';
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('print the schema version, the running workers and every schedule with its last run')
    .option('--json', 'print JSON instead of text')
    .action(async (raw) => {
      const options = parseOptions(jsonOnly, raw);
      try {
        await withDatabase({ create: false }, async (db) => {
          const status = await readStatus(db.connectionString);
          process.stdout.write(
            options.json ? JSON.stringify({ database: db.description, ...status }, null, 2) + '\n' : formatStatus(status, db.description) + '\n',
          );
        });
      } catch (err) {
        // Nothing set up yet: say so (exit 0, as for a database without the schema), create nothing.
        if (!(err instanceof TallyError && err.code === 'embedded_not_created')) throw err;
        process.stdout.write(await formatNotCreated(loadConfig().dataDir, options.json === true));
      }
    });
}
