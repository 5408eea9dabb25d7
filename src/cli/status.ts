/** `tally status`: schema version, workers, schedules with their last runs, ledger and rollups. */
import type { Command } from 'commander';
import { formatStatus, readStatus } from '../worker/status.ts';
import { withDatabase } from './context.ts';
import { jsonOnly, parseOptions } from './options.ts';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('print the schema version, the running workers and every schedule with its last run')
    .option('--json', 'print JSON instead of text')
    .action(async (raw) => {
      const options = parseOptions(jsonOnly, raw);
      await withDatabase(false, async (db) => {
        const status = await readStatus(db.connectionString);
        process.stdout.write(
          options.json ? JSON.stringify({ database: db.description, ...status }, null, 2) + '\n' : formatStatus(status, db.description) + '\n',
        );
      });
    });
}
