/** `tally accounts create|list` and `tally keys create|list|revoke`, run as the real CLI on a migrated database. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runCli } from './helpers/cli.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  db = await migratedDatabase();
  env = cleanEnv({ DATABASE_URL: db.url });
});
afterAll(async () => {
  await db?.drop();
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NO_SUCH_ID = '00000000-0000-4000-8000-000000000000';

describe('tally accounts', () => {
  it('create prints the id alone on stdout, and list shows the account', async () => {
    const created = await runCli(['accounts', 'create', 'Acme', '--timezone', 'Europe/Paris', '--external-id', 'cus_123'], env);
    expect(created.code).toBe(0);
    const id = created.stdout.trim();
    expect(id).toMatch(UUID);
    expect(created.stderr).toContain('created account "Acme" (time zone Europe/Paris, external id cus_123)');
    const { rows } = await db.pool.query('select name, timezone, external_id from tally.accounts where id = $1', [id]);
    expect(rows).toEqual([{ name: 'Acme', timezone: 'Europe/Paris', external_id: 'cus_123' }]);

    const list = await runCli(['accounts', 'list'], env);
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(/^ID\s+NAME\s+TIME ZONE\s+EXTERNAL ID\s+CREATED$/);
    expect(list.stdout).toMatch(new RegExp(`${id}\\s+Acme\\s+Europe/Paris\\s+cus_123`));
  });

  it('--json: create returns the account, list an array of them', async () => {
    const created = await runCli(['accounts', 'create', 'Json Co', '--json'], env);
    expect(created.code).toBe(0);
    const account = JSON.parse(created.stdout);
    expect(account).toEqual({
      id: expect.stringMatching(UUID), name: 'Json Co', externalId: null, timezone: 'UTC', createdAt: expect.any(String), updatedAt: expect.any(String),
    });
    const list = JSON.parse((await runCli(['accounts', 'list', '--json'], env)).stdout);
    expect(Array.isArray(list)).toBe(true);
    expect(list).toContainEqual(account);
  });

  it('a bad time zone or a duplicate external id fails with its code (exit 1); a missing or empty name is usage (exit 2)', async () => {
    const tz = await runCli(['accounts', 'create', 'X', '--timezone', 'Mars/Olympus'], env);
    expect(tz.code).toBe(1);
    expect(tz.stderr.trim()).toMatch(/^error \[invalid_timezone\]: /);
    await runCli(['accounts', 'create', 'First', '--external-id', 'dup-1'], env);
    const dup = await runCli(['accounts', 'create', 'Second', '--external-id', 'dup-1'], env);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/^error \[duplicate_external_id\]: /);
    expect((await runCli(['accounts', 'create'], env)).code).toBe(2);
    const empty = await runCli(['accounts', 'create', '  '], env);
    expect(empty.code).toBe(2);
    expect(empty.stderr.trim()).toBe('error: NAME must not be empty');
  });
});

describe('tally keys', () => {
  it('create shows the secret once; list shows prefix and state, never the secret; revoke revokes (again is fine)', async () => {
    const account = (await runCli(['accounts', 'create', 'Keyed'], env)).stdout.trim();
    const created = await runCli(['keys', 'create', '--account', account, '--name', 'production'], env);
    expect(created.code).toBe(0);
    const secret = created.stdout.trim();
    expect(secret).toMatch(/^tk_\S{20,}$/);
    expect(created.stderr).toMatch(/created key [0-9a-f-]{36} "production" \(prefix tk_\S+\).*shown this once/);

    // the secret authenticates
    const { rows } = await db.pool.query('select account_id from tally.verify_api_key(p_secret => $1::text)', [secret]);
    expect(rows).toEqual([{ account_id: account }]);

    const listed = await runCli(['keys', 'list', '--account', account, '--json'], env);
    expect(listed.code).toBe(0);
    expect(listed.stdout).not.toContain(secret);
    const [key, ...others] = JSON.parse(listed.stdout);
    expect(others).toEqual([]);
    expect(key).toEqual({
      id: expect.stringMatching(UUID), accountId: account, name: 'production', prefix: secret.slice(0, 12), state: 'active',
      createdAt: expect.any(String), expiresAt: null, revokedAt: null,
    });
    const text = await runCli(['keys', 'list', '--account', account], env);
    expect(text.stdout).toMatch(new RegExp(`${key.id}\\s+${account}\\s+production\\s+${secret.slice(0, 12)}\\s+active`));
    expect(text.stdout).not.toContain(secret);

    const revoked = await runCli(['keys', 'revoke', key.id, '--json'], env);
    expect(revoked.code).toBe(0);
    const { revokedAt } = JSON.parse(revoked.stdout);
    expect(Number.isNaN(Date.parse(revokedAt))).toBe(false);
    const again = await runCli(['keys', 'revoke', key.id], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`^revoked key ${key.id} at `));
    const after = JSON.parse((await runCli(['keys', 'list', '--account', account, '--json'], env)).stdout);
    expect(after[0]).toMatchObject({ id: key.id, state: 'revoked', revokedAt });
  });

  it('create --json returns the secret with the key; an expired key is listed as expired', async () => {
    const account = (await runCli(['accounts', 'create', 'Expiring'], env)).stdout.trim();
    const created = await runCli(['keys', 'create', '--account', account, '--json', '--expires-at', new Date(Date.now() + 3_600_000).toISOString()], env);
    expect(created.code).toBe(0);
    const key = JSON.parse(created.stdout);
    expect(key).toEqual({ id: expect.stringMatching(UUID), accountId: account, name: 'default', prefix: key.secret.slice(0, 12), secret: expect.stringMatching(/^tk_/), expiresAt: expect.any(String) });
    await db.pool.query("update tally.api_keys set expires_at = created_at + interval '1 millisecond' where id = $1", [key.id]);
    const listed = JSON.parse((await runCli(['keys', 'list', '--account', account, '--json'], env)).stdout);
    expect(listed[0]).toMatchObject({ id: key.id, state: 'expired' });
  });

  it('an unknown account or key fails with its code (exit 1); a malformed id is usage (exit 2)', async () => {
    const unknownAccount = await runCli(['keys', 'create', '--account', NO_SUCH_ID], env);
    expect(unknownAccount.code).toBe(1);
    expect(unknownAccount.stderr.trim()).toMatch(/^error \[account_not_found\]: /);

    const unknownKey = await runCli(['keys', 'revoke', NO_SUCH_ID], env);
    expect(unknownKey.code).toBe(1);
    expect(unknownKey.stdout).toBe('');
    expect(unknownKey.stderr.trim()).toMatch(/^error \[api_key_not_found\]: /);

    const badKey = await runCli(['keys', 'revoke', 'not-a-key'], env);
    expect(badKey.code).toBe(2);
    expect(badKey.stderr.trim()).toBe('error: KEY_ID must be a key id (a UUID, see `tally keys list`)');
    const badAccount = await runCli(['keys', 'create', '--account', 'acme'], env);
    expect(badAccount.code).toBe(2);
    expect(badAccount.stderr.trim()).toBe('error: --account: must be a UUID');
    expect((await runCli(['keys', 'create'], env)).code).toBe(2);
  });
});
