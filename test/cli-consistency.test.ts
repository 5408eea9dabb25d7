/**
 * The commands built on the TypeScript client (accounts, keys, events record, demo) fail the
 * way the others do: `schema_outdated` on a database without Tally, `database_unreachable`
 * when nothing answers, `database_auth_failed` when the server refuses the login. Also:
 * a command group without its subcommand, and a few usage messages.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTally } from '../src/client/client.ts';
import { ApiKeyError, DatabaseError, toTallyError } from '../src/client/errors.ts';
import { cleanEnv, runCli } from './helpers/cli.ts';
import { emptyDatabase, migratedDatabase, type TestDatabase } from './helpers/db.ts';

let empty: TestDatabase;
let migrated: TestDatabase;
beforeAll(async () => {
  [empty, migrated] = await Promise.all([emptyDatabase(), migratedDatabase()]);
});
afterAll(async () => {
  await Promise.all([empty?.drop(), migrated?.drop()]);
});

const ID = '00000000-0000-4000-8000-000000000000';
const CLIENT_COMMANDS: string[][] = [
  ['accounts', 'list'],
  ['accounts', 'create', 'Acme'],
  ['keys', 'list'],
  ['keys', 'create', '--account', ID],
  ['keys', 'revoke', ID],
  ['events', 'record', JSON.stringify({ account_id: ID, event_type: 'api_call' })],
  ['demo', '--no-progress'],
  ['report', '--account', ID],
];

/** The server of the test database, with a user that does not exist. */
/**
 * A URL naming a role that does not exist. With the server's password kept, a trust server
 * refuses it with 28000 (no such role) and a password server with 28P01; without any
 * password, a password server makes pg itself give up (SCRAM needs one).
 */
const noSuchRole = (password: 'kept' | 'none' = 'kept') => {
  const url = new URL(migrated.url);
  url.username = 'tally_no_such_role';
  if (password === 'none') url.password = '';
  return url.toString();
};

describe('commands on the TS client: the same connection and schema errors as the others', () => {
  it.each(CLIENT_COMMANDS.map((args) => [args.slice(0, 2).join(' '), args] as const))('%s: schema_outdated on a database without Tally', async (_name, args) => {
    const result = await runCli(args, cleanEnv({ DATABASE_URL: empty.url }));
    expect(result.stderr.trim()).toBe('error [schema_outdated]: Tally is not installed in this database: run `tally migrate` first');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
  });

  it.each(CLIENT_COMMANDS.map((args) => [args.slice(0, 2).join(' '), args] as const))('%s: database_unreachable when nothing answers', async (_name, args) => {
    const result = await runCli([...args, '--json'], cleanEnv({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/postgres' }));
    expect(JSON.parse(result.stderr).error.code).toBe('database_unreachable');
    expect(result.code).toBe(1);
  });

  it('a role that does not exist is database_auth_failed, not unknown_api_key (keys list, and verify for comparison)', async () => {
    for (const args of [['keys', 'list'], ['accounts', 'list'], ['verify']]) {
      const result = await runCli(args, cleanEnv({ DATABASE_URL: noSuchRole() }));
      expect(result.stderr.trim(), args.join(' ')).toMatch(
        /^error \[database_auth_failed\]: the database refused the login: (role "tally_no_such_role" does not exist|password authentication failed for user "tally_no_such_role")$/,
      );
      expect(result.code).toBe(1);
    }
  });

  it('a URL without a password ends with database_auth_failed whatever the server asks, and the process exits', async () => {
    for (const args of [['keys', 'list'], ['verify']]) {
      // runCli resolves only once the process has exited: pg used to keep the socket of a
      // SCRAM request it could not answer open, and the command hung after its error
      const result = await runCli(args, cleanEnv({ DATABASE_URL: noSuchRole('none'), PGPASSWORD: '' }));
      expect(result.stderr.trim(), args.join(' ')).toMatch(/^error \[database_auth_failed\]: /);
      expect(result.code).toBe(1);
    }
  });

  it('the TS client maps a refused login to database_auth_failed, not to an API-key error', async () => {
    const tally = createTally({ connectionString: noSuchRole(), max: 1 });
    try {
      const err = toTallyError(await tally.listAccounts().catch((e: unknown) => e));
      expect(err).toBeInstanceOf(DatabaseError);
      expect(err).not.toBeInstanceOf(ApiKeyError);
      expect(err).toMatchObject({ code: 'database_auth_failed', transient: false });
      expect(['28000', '28P01']).toContain((err as DatabaseError).sqlstate);
    } finally {
      await tally.close();
    }
  });

  it('28P01 (wrong password) without a Tally code is database_auth_failed; 28000 with one stays an API-key error', () => {
    // the local server trusts 127.0.0.1, so a wrong password cannot be provoked here: the
    // mapping is checked on the error object node-postgres would throw
    expect(toTallyError({ code: '28P01', message: 'password authentication failed for user "app"' })).toMatchObject({ code: 'database_auth_failed' });
    expect(toTallyError({ code: '28000', hint: 'revoked_api_key', message: 'api_key: revoked' })).toBeInstanceOf(ApiKeyError);
    // an API-key code this version does not know yet
    expect(toTallyError({ code: '28000', hint: 'suspended_api_key', message: 'api_key: suspended' })).toMatchObject({ code: 'suspended_api_key', name: 'ApiKeyError' });
    // a Postgres hint is a sentence, not a Tally code
    expect(toTallyError({ code: '28000', hint: 'Check pg_hba.conf.', message: 'no pg_hba.conf entry' })).toMatchObject({ code: 'database_auth_failed' });
  });

  it('the commands still work on a migrated database', async () => {
    const env = cleanEnv({ DATABASE_URL: migrated.url });
    const created = await runCli(['accounts', 'create', 'Consistent'], env);
    expect(created.code).toBe(0);
    const recorded = await runCli(['events', 'record', JSON.stringify({ account_id: created.stdout.trim(), event_type: 'api_call' }), '--json'], env);
    expect(recorded.code).toBe(0);
    expect(JSON.parse(recorded.stdout)).toMatchObject({ accepted: 1, duplicates: 0, conflicts: [], rejected: [] });
  });
});

describe('a command group without its subcommand', () => {
  it.each([
    [[], 'error: a command is required: tally <command>, one of those listed above', 'Usage: tally [options] [command]'],
    [['accounts'], 'error: a command is required: tally accounts create|list', 'Usage: tally accounts [options] [command]'],
    [['keys'], 'error: a command is required: tally keys create|list|revoke', 'Usage: tally keys [options] [command]'],
    [['events'], 'error: a command is required: tally events record', 'Usage: tally events [options] [command]'],
  ])('tally %j: help on stderr, then one line naming the subcommands, exit 2', async (args, last, usage) => {
    const result = await runCli(args, cleanEnv());
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(usage);
    expect(result.stderr).not.toContain('outputHelp');
    expect(result.stderr.trimEnd().split('\n').at(-1)).toBe(last);
  });
});

describe('usage messages', () => {
  const env = () => cleanEnv({ DATABASE_URL: migrated.url });

  it('accounts create: a name over 200 characters is bad usage (exit 2), like an empty one', async () => {
    const long = await runCli(['accounts', 'create', 'é'.repeat(201)], env());
    expect(long.stderr.trim()).toBe('error: NAME must be at most 200 characters');
    expect(long.code).toBe(2);
    // 200 characters (not UTF-16 units) are accepted, as by create_account
    const ok = await runCli(['accounts', 'create', '😀'.repeat(200)], env());
    expect(ok.code).toBe(0);
  });

  it('events record - with nothing on stdin says stdin was empty', async () => {
    const result = await runCli(['events', 'record', '-'], env(), '');
    expect(result.stderr.trim()).toBe('error: no events on stdin: pipe a JSON object or array into `tally events record -`');
    expect(result.code).toBe(2);
  });

  it('schedule set: an interval out of bounds is named once; a cron out of range in plain words, naming the field', async () => {
    const interval = await runCli(['schedule', 'set', 'tally-rollups', '0s'], env());
    expect(interval.stderr.trim()).toBe("error: tally-rollups: rollups.interval must be an interval between 1 second and 1 hour (got '0s')");
    expect(interval.code).toBe(2);
    const cron = await runCli(['schedule', 'set', 'tally-retention', '61 * * * *'], env());
    expect(cron.stderr.trim()).toBe('error: tally-retention: invalid cron "61 * * * *": minute field "61": must be 0 to 59 (got 61)');
    expect(cron.code).toBe(2);
    const step = await runCli(['schedule', 'set', 'tally-retention', '* */0 * * *'], env());
    expect(step.stderr.trim()).toBe('error: tally-retention: invalid cron "* */0 * * *": hour field "*/0": a step (/N) must be at least 1');
  });
});

