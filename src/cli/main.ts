/**
 * The `tally` command line. Exit codes: 0 ok, 1 the work failed, 2 bad usage (an
 * unknown or invalid option or environment variable: one line on stderr, no stack).
 * Each command lives in its own module and registers itself here.
 */
import { Command, CommanderError } from 'commander';
import { TallyError, UsageError, errorMessage } from '../errors.ts';
import { TALLY_VERSION } from '../version.ts';
import { EXIT_FAILURE, EXIT_USAGE } from './context.ts';
import { registerAccounts } from './accounts.ts';
import { registerConnect } from './connect.ts';
import { registerDemo } from './demo.ts';
import { registerEvents } from './events.ts';
import { registerImport } from './import.ts';
import { registerKeys } from './keys.ts';
import { registerMigrate } from './migrate.ts';
import { registerRollup } from './rollup.ts';
import { registerRun } from './run.ts';
import { registerSchedule } from './schedule.ts';
import { registerService } from './service.ts';
import { registerStatus } from './status.ts';
import { registerVerify } from './verify.ts';

export function buildProgram(): Command {
  const program = new Command('tally')
    .description(
      'Postgres-native usage metering: install the tally schema, run its scheduled jobs, import events, report their state.\n' +
        'Uses DATABASE_URL when set; otherwise an embedded PostgreSQL with its data in TALLY_DATA_DIR (default .tally/pg).',
    )
    .version(TALLY_VERSION, '-V, --version', 'print the version of Tally')
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

  registerMigrate(program);
  registerService(program);
  registerStatus(program);
  registerVerify(program);
  registerRollup(program);
  registerSchedule(program);
  registerImport(program);
  registerRun(program);
  registerConnect(program);
  registerAccounts(program);
  registerKeys(program);
  registerEvents(program);
  registerDemo(program);
  return program;
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
