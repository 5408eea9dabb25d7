/**
 * The `tally` command line. Exit codes: 0 ok, 1 the work failed, 2 bad usage (an
 * unknown or invalid option or environment variable: one line on stderr, no stack).
 * Each command lives in its own module and registers itself here.
 */
import { Command, CommanderError } from 'commander';
import { TallyError, UsageError, errorMessage } from '../errors.ts';
import { toTallyError } from '../client/errors.ts';
import { TALLY_VERSION } from '../version.ts';
import { EXIT_FAILURE, EXIT_USAGE } from './context.ts';
import { registerAccounts } from './accounts.ts';
import { registerConnect } from './connect.ts';
import { registerDemo } from './demo.ts';
import { registerEvents } from './events.ts';
import { registerImport } from './import.ts';
import { registerKeys } from './keys.ts';
import { registerMigrate } from './migrate.ts';
import { registerReport } from './report.ts';
import { registerRollup } from './rollup.ts';
import { registerRun } from './run.ts';
import { registerSchedule } from './schedule.ts';
import { registerService } from './service.ts';
import { registerStatus } from './status.ts';
import { registerVerify } from './verify.ts';

/** The program; `onError` receives commander's own error text (an unknown option, say) instead of stderr. */
export function buildProgram(onError?: (text: string) => void): Command {
  const program = new Command('tally')
    .description(
      'Postgres-native usage metering: install the tally schema, run its scheduled jobs, import events, report their state.\n' +
        'Uses DATABASE_URL when set; otherwise an embedded PostgreSQL with its data in TALLY_DATA_DIR (default .tally/pg).',
    )
    .version(TALLY_VERSION, '-V, --version', 'print the version of Tally')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: (text, write) => (onError ? onError(text) : write(text.split('\n')[0] + '\n')) })
    .addHelpText(
      'after',
      '\nEnvironment:\n' +
        '  DATABASE_URL          postgres:// URL of the server to use (unset: embedded PostgreSQL)\n' +
        '  TALLY_DATA_DIR        data directory of the embedded PostgreSQL (default .tally/pg)\n' +
        '  TALLY_EMBEDDED_PORT   port of the embedded PostgreSQL (default: a free one); if it is taken: embedded_port_busy\n\n' +
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
  registerReport(program);
  registerDemo(program);
  return program;
}

/** `--json` anywhere before a `--` terminator: errors then go out as JSON too. */
function wantsJson(argv: string[]): boolean {
  const args = argv.slice(2);
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).includes('--json');
}

/** `a command is required: tally accounts create|list`, for the group the words of `argv` name. */
function commandRequired(program: Command, argv: string[]): string {
  let group = program;
  const path = [program.name()];
  for (const word of argv.slice(2)) {
    if (word === '--') break;
    if (word.startsWith('-')) continue;
    const sub = group.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!sub) break;
    group = sub;
    path.push(sub.name());
  }
  if (group === program) return 'a command is required: tally <command>, one of those listed above';
  const names = group.commands.map((c) => c.name()).filter((n) => n !== 'help');
  return `a command is required: ${path.join(' ')} ${names.join('|')}`;
}

/**
 * Every failure as a TallyError with a stable code: Tally's own pass through, Postgres
 * errors are mapped by the client's error table (SQLSTATE and the code in HINT), and
 * anything else (a bug, a Node error) becomes `internal_error`.
 */
export function cliError(err: unknown): TallyError {
  if (err instanceof TallyError) return err;
  const mapped = toTallyError(err);
  if (mapped.code !== 'client_error') return mapped;
  return new TallyError('internal_error', `${errorMessage(err)} (TALLY_DEBUG=1 prints the stack)`, { cause: err });
}

/**
 * A closed stdout (`tally --help | head -1`) ends the process quietly instead of as an
 * unhandled EPIPE; the same for stderr.
 */
function quietOnEpipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.listenerCount('error') > 0) continue;
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
      throw err;
    });
  }
}

/**
 * Runs the CLI and returns its exit code. A failure is one line on stderr:
 * `error [code]: message` (exit 1) or `error: message` (bad usage, exit 2). With `--json`
 * it is one JSON object on stderr instead, `{"error":{"code":…,"message":…}}`, so stdout
 * carries only results.
 */
export async function main(argv: string[] = process.argv): Promise<number> {
  quietOnEpipe();
  const json = wantsJson(argv);
  const report = (code: string, message: string, plain: string) =>
    process.stderr.write(json ? JSON.stringify({ error: { code, message } }) + '\n' : plain + '\n');
  let commanderText: string | undefined;
  const program = buildProgram((text) => (commanderText ??= text));
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version requests end here too, with exit code 0.
      if (err.exitCode === 0) return 0;
      if (err.code === 'commander.help') {
        // a command group without its subcommand: commander has printed the group's help on stderr
        const message = commandRequired(program, argv);
        report('invalid_usage', message, `error: ${message}`);
        return EXIT_USAGE;
      }
      const message = (commanderText ?? err.message).split('\n')[0]!.replace(/^error: /, '');
      report('invalid_usage', message, `error: ${message}`);
      return EXIT_USAGE;
    }
    if (err instanceof UsageError) {
      report(err.code, err.message, `error: ${err.message}`);
      return EXIT_USAGE;
    }
    const failure = cliError(err);
    report(failure.code, failure.message, `error [${failure.code}]: ${failure.message}`);
    if (process.env.TALLY_DEBUG) console.error(err);
    return EXIT_FAILURE;
  }
}
