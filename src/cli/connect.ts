/**
 * `tally url` (the connection URL, password included) and `tally psql` (psql on it), for
 * the database in DATABASE_URL or the embedded PostgreSQL.
 *
 * `tally url` only reports: it never starts, creates or adopts the embedded server, since a
 * URL printed by a process that then stopped the server would be useless. When the embedded
 * server is not running it says so (exit 1, embedded_not_running) and names `npm start`,
 * which keeps it running. `tally psql` needs a running server only for its own duration: it
 * starts the embedded one if needed and stops it again when psql exits.
 */
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { z } from 'zod';
import { loadConfig, redactUrl } from '../database/config.ts';
import { EMBEDDED_SUPERUSER, inspectEmbedded } from '../database/embedded.ts';
import { TallyError } from '../errors.ts';
import { withDatabase } from './context.ts';
import { parseOptions } from './options.ts';

const urlOptions = z.strictObject({ json: z.boolean().optional(), redacted: z.boolean().optional() });

export interface UrlReport {
  url: string;
  kind: 'external' | 'embedded';
  /** external: not checked (undefined); embedded: whether its server is running. */
  running: boolean | undefined;
  host: string;
  port: number;
  database: string;
  user: string;
  /** embedded only */
  dataDir?: string;
}

function describeUrl(url: string, kind: UrlReport['kind'], running: boolean | undefined, redacted: boolean, dataDir?: string): UrlReport {
  const parsed = new URL(url);
  return {
    url: redacted ? redactUrl(url) : url,
    kind,
    running,
    host: parsed.hostname,
    port: Number(parsed.port || 5432),
    database: decodeURIComponent(parsed.pathname.replace(/^\//, '')) || decodeURIComponent(parsed.username),
    user: decodeURIComponent(parsed.username),
    ...(dataDir ? { dataDir } : {}),
  };
}

/** The URL of the configured database, without starting anything. */
export async function currentUrl(redacted: boolean): Promise<UrlReport> {
  const config = loadConfig();
  if (config.databaseUrl) return describeUrl(config.databaseUrl, 'external', undefined, redacted);
  const info = await inspectEmbedded(config.dataDir);
  if (!info.initialised || !info.connectionString) {
    throw new TallyError(
      'embedded_not_running',
      `there is no embedded database in ${info.dataDir} yet: run \`npm start\` (or \`tally start\`) here first, or set DATABASE_URL`,
    );
  }
  if (!info.running) {
    throw new TallyError(
      'embedded_not_running',
      `the embedded PostgreSQL in ${info.dataDir} is not running: start it with \`npm start\` in another terminal (it runs until Ctrl-C), then ask again; \`tally psql\` starts it by itself`,
    );
  }
  return describeUrl(info.connectionString, 'embedded', true, redacted, info.dataDir);
}

/** Runs psql on the URL (its password in PGPASSWORD, not on the command line) and resolves with its exit code. */
function runPsql(connectionString: string, args: string[]): Promise<number> {
  const url = new URL(connectionString);
  const password = decodeURIComponent(url.password);
  url.password = '';
  const env = { ...process.env, ...(password ? { PGPASSWORD: password } : {}) };
  return new Promise((resolve, reject) => {
    // Ctrl-C belongs to psql (it cancels the running query); this process waits for psql,
    // then stops the embedded server it may have started.
    const ignore = () => undefined;
    process.on('SIGINT', ignore);
    process.on('SIGQUIT', ignore);
    const done = () => {
      process.off('SIGINT', ignore);
      process.off('SIGQUIT', ignore);
    };
    const child = spawn('psql', [url.toString(), ...args], { stdio: 'inherit', env });
    child.on('error', (err: NodeJS.ErrnoException) => {
      done();
      reject(
        err.code === 'ENOENT'
          ? new TallyError(
              'psql_not_found',
              'psql is not installed or not on PATH: install the PostgreSQL client (Debian/Ubuntu: apt install postgresql-client; macOS: brew install libpq), or point another client at `tally url`',
            )
          : new TallyError('psql_failed', `psql could not be started: ${err.message}`, { cause: err }),
      );
    });
    child.on('close', (code, signal) => {
      done();
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

export function registerConnect(program: Command): void {
  program
    .command('url')
    .description('print the connection URL of the database (DATABASE_URL, or the running embedded PostgreSQL), password included')
    .option('--redacted', 'mask the password')
    .option('--json', 'print JSON: url, kind, running, host, port, database, user (and dataDir when embedded)')
    .addHelpText(
      'after',
      `\nWith DATABASE_URL set it prints that URL. Otherwise it prints the URL of the embedded\n` +
        `PostgreSQL (superuser "${EMBEDDED_SUPERUSER}", database "postgres", 127.0.0.1 only); its random password\n` +
        'and port are kept in tally-embedded.json in the data directory (TALLY_DATA_DIR, default .tally/pg).\n' +
        'It never starts the embedded server: when it is not running, it exits 1 (embedded_not_running)\n' +
        'and tells you to run `npm start`, which keeps it running until Ctrl-C.\n\n' +
        'Example: psql "$(npx tally url)"    Exit codes: 0 printed, 1 not running, 2 bad usage.',
    )
    .action(async (raw) => {
      const options = parseOptions(urlOptions, raw);
      const report = await currentUrl(options.redacted === true);
      process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : report.url + '\n');
    });

  program
    .command('psql')
    .description('open psql on the database (DATABASE_URL, or the embedded PostgreSQL, started for the session if needed)')
    .argument('[psql-args...]', 'passed on to psql after the URL, e.g. -c "select 1" or -f script.sql')
    .helpOption('--help', 'display help for command')
    .allowUnknownOption()
    .addHelpText(
      'after',
      '\nEvery argument after `psql` goes to psql (use `--` before one that tally would read, such as --help).\n' +
        'The password travels in PGPASSWORD, not on the command line. If the embedded server is not running,\n' +
        'it is started for the session and stopped when psql exits.\n\n' +
        'Examples:\n' +
        '  npx tally psql\n' +
        "  npx tally psql -c 'select * from tally.accounts'\n" +
        '  npx tally psql -v ON_ERROR_STOP=1 -f report.sql\n\n' +
        'Exit codes: 0 psql succeeded, 1 psql is missing (psql_not_found) or failed (psql_failed), 2 bad usage.',
    )
    .action(async (args: string[]) => {
      await withDatabase({}, async (db) => {
        const code = await runPsql(db.connectionString, args);
        if (code !== 0) throw new TallyError('psql_failed', `psql exited with code ${code}`);
      });
    });
}
