/** `tally migrate` (apply pending migrations) and `tally sql` (print the install script). */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { installScript, runMigrations } from '../database/migrate.ts';
import { TallyError, UsageError, errorMessage } from '../errors.ts';
import { log, withDatabase } from './context.ts';
import { parseOptions } from './options.ts';

const migrateOptions = z.strictObject({ verbose: z.boolean().optional() });
const sqlOptions = z.strictObject({
  transaction: z.boolean().default(true),
  output: z.string().min(1, 'needs a file path').optional(),
});

export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('apply pending migrations to the database (safe to run concurrently)')
    .option('--verbose', 'log every step of the migration runner')
    .action(async (raw) => {
      const options = parseOptions(migrateOptions, raw);
      await withDatabase({ verbose: options.verbose, create: true }, async (db) => {
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
      if (options.output) {
        // a folder that does not exist is a bad -o (exit 2), checked before any work
        const folder = path.dirname(path.resolve(options.output));
        if (!fs.existsSync(folder)) throw new UsageError(`--output: no such folder ${folder}`);
        if (fs.existsSync(options.output) && fs.statSync(options.output).isDirectory()) throw new UsageError(`--output: ${options.output} is a folder; give a file path`);
      }
      const script = await installScript({ transaction: options.transaction });
      if (!options.output) {
        process.stdout.write(script);
        return;
      }
      try {
        fs.writeFileSync(options.output, script);
      } catch (err) {
        throw new TallyError('output_failed', `cannot write ${options.output}: ${errorMessage(err)}`, { cause: err });
      }
    });
}
