/**
 * API keys created before the hashes moved to tally.api_key_secrets keep authenticating
 * after the migration, and the hash is nowhere an API role can read.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../src/database/migrate.ts';
import { emptyDatabase, type TestDatabase } from './helpers/db.ts';
import { migrateBefore } from './helpers/partial-migrate.ts';
import { as, createUser, service, user } from './helpers/personas.ts';

let db: TestDatabase;
let owner: string;
let account: string;
let before: { id: string; secret: string };
beforeAll(async () => {
  db = await emptyDatabase();
  // the schema as it was: every migration numbered before the one that moves the hashes
  const move = (await import('node:fs')).readdirSync(new URL('../db/migrations/', import.meta.url)).find((f) => f.endsWith('_api-key-secrets.sql'))!;
  await migrateBefore(db.url, move);
  owner = await createUser(db.pool);
  account = await as(db.pool, service, async (c) => (await c.query('select id from tally.create_account(p_name => $1, p_owner_id => $2)', ['Old', owner])).rows[0].id);
  before = await as(db.pool, service, async (c) => (await c.query("select id, secret from tally.create_api_key($1, 'from before')", [account])).rows[0]);
  await runMigrations(db.url);
});
afterAll(async () => {
  await db?.drop();
});

describe('moving API key hashes to tally.api_key_secrets', () => {
  it('a key created before the move still authenticates, and can be revoked', async () => {
    const verified = await as(db.pool, service, async (c) => (await c.query('select * from tally.verify_api_key($1)', [before.secret])).rows[0]);
    expect(verified).toEqual({ api_key_id: before.id, account_id: account });
    await as(db.pool, user(owner), (c) => c.query('select tally.revoke_api_key($1)', [before.id]));
    await expect(as(db.pool, service, (c) => c.query('select * from tally.verify_api_key($1)', [before.secret]))).rejects.toMatchObject({
      code: '28000',
      hint: 'revoked_api_key',
    });
  });

  it('the hash moved: one row per key, none left in api_keys', async () => {
    const secrets = await db.pool.query('select account_id, api_key_id from tally.api_key_secrets');
    expect(secrets.rows).toEqual([{ account_id: account, api_key_id: before.id }]);
    const column = await db.pool.query("select 1 from pg_attribute where attrelid = 'tally.api_keys'::regclass and attname = 'secret_hash' and not attisdropped");
    expect(column.rows).toEqual([]);
  });

  it('a member reads the old key with select *; new keys authenticate too', async () => {
    const rows = await as(db.pool, user(owner), async (c) => (await c.query('select * from tally.api_keys')).rows);
    expect(rows.map((r) => r.id)).toEqual([before.id]);
    const key = await as(db.pool, user(owner), async (c) => (await c.query("select id, secret from tally.create_api_key($1, 'after')", [account])).rows[0]);
    const verified = await as(db.pool, service, async (c) => (await c.query('select * from tally.verify_api_key($1)', [key.secret])).rows[0]);
    expect(verified).toEqual({ api_key_id: key.id, account_id: account });
  });
});
