/**
 * No existence oracles and no leaked names: a caller who is not a member gets the same
 * answer for another tenant's account or key as for one that does not exist, and no error
 * names an object the caller did not supply. Only service callers are told "not found".
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { as, createUser, service, user, type Persona } from './helpers/personas.ts';

let db: TestDatabase;
let owner: string;
let viewer: string;
let stranger: string;
let account: string;
let keyId: string;
beforeAll(async () => {
  db = await migratedDatabase();
  [owner, viewer, stranger] = await Promise.all([createUser(db.pool), createUser(db.pool), createUser(db.pool)]);
  account = await as(db.pool, service, async (c) => (await c.query('select id from tally.create_account(p_name => $1, p_owner_id => $2)', ['Victim', owner])).rows[0].id);
  await as(db.pool, service, (c) => c.query("select tally.set_account_member($1, $2, 'viewer')", [account, viewer]));
  keyId = await as(db.pool, service, async (c) => (await c.query("select id from tally.create_api_key($1, 'server')", [account])).rows[0].id);
  // the stranger has an account of their own, so they are a real tenant
  await as(db.pool, user(stranger), (c) => c.query("select tally.create_account(p_name => 'Stranger Co')"));
});
afterAll(async () => {
  await db?.drop();
});

/** A signed-in user whose JWT claims service_role: the database role decides, not the claim. */
function forged(userId: string): Persona & { forge: true } {
  return { role: 'authenticated', userId, forge: true } as Persona & { forge: true };
}

async function failure(persona: Persona, sql: string, params: unknown[]): Promise<{ code: string; hint: string; message: string }> {
  const run = async () => {
    const claims = 'forge' in persona ? { sub: (persona as { userId: string }).userId, role: 'service_role' } : undefined;
    return as(db.pool, persona, async (c) => {
      if (claims) await c.query("select set_config('request.jwt.claims', $1, true)", [JSON.stringify(claims)]);
      return c.query(sql, params);
    });
  };
  try {
    await run();
  } catch (err) {
    const e = err as { code: string; hint: string; message: string };
    return { code: e.code, hint: e.hint, message: e.message };
  }
  throw new Error(`${sql} did not fail`);
}

// Each call takes the id under test as $1.
const calls: [string, string, (id: string) => unknown[]][] = [
  ['update_account', "select tally.update_account(p_account_id => $1, p_name => 'pwned')", (id) => [id]],
  ['create_api_key', "select tally.create_api_key($1, 'stolen')", (id) => [id]],
  ['set_account_member', "select tally.set_account_member($1, $2, 'owner')", (id) => [id, stranger]],
  ['remove_account_member (someone else)', 'select tally.remove_account_member($1, $2)', (id) => [id, owner]],
  ['remove_account_member (leaving)', 'select tally.remove_account_member($1, $2)', (id) => [id, stranger]],
];

describe('accounts: a foreign id and an unknown id get the same answer', () => {
  it.each(calls)('%s, as a stranger and with a forged service_role claim', async (_name, sql, params) => {
    for (const persona of [user(stranger), forged(stranger)]) {
      const unknown = randomUUID();
      const foreign = await failure(persona, sql, params(account));
      const missing = await failure(persona, sql, params(unknown));
      expect(foreign).toMatchObject({ code: '42501', hint: 'forbidden' });
      expect(missing).toEqual({ ...foreign, message: foreign.message.replace(account, unknown) });
      expect(foreign.message).toContain(account); // the id the caller gave, and nothing else
    }
  });

  it('a member whose role is too low is refused the same way, naming only the given id', async () => {
    const low = await failure(user(viewer), "select tally.update_account(p_account_id => $1, p_name => 'x')", [account]);
    const unknown = randomUUID();
    const missing = await failure(user(viewer), "select tally.update_account(p_account_id => $1, p_name => 'x')", [unknown]);
    expect(low).toMatchObject({ code: '42501', hint: 'forbidden' });
    expect(missing).toEqual({ ...low, message: low.message.replace(account, unknown) });
  });

  it('a service caller, who may see everything, is told account_not_found', async () => {
    const missing = await failure(service, "select tally.update_account(p_account_id => $1, p_name => 'x')", [randomUUID()]);
    expect(missing).toMatchObject({ code: 'P0002', hint: 'account_not_found' });
  });

  it('nothing was changed by the refused calls', async () => {
    const { rows } = await db.pool.query('select name from tally.accounts where id = $1', [account]);
    expect(rows).toEqual([{ name: 'Victim' }]);
    const members = await db.pool.query('select user_id from tally.account_members where account_id = $1 order by role', [account]);
    expect(members.rows.map((r) => r.user_id).sort()).toEqual([owner, viewer].sort());
  });
});

describe('API keys: revoke_api_key names no account', () => {
  it.each([
    ['a stranger', () => user(stranger)],
    ['a forged service_role claim', () => forged(stranger)],
    ['a viewer of the key\'s account', () => user(viewer)],
  ])('%s gets the same answer for a foreign key and an unknown one', async (_name, persona) => {
    const unknown = randomUUID();
    const foreign = await failure(persona(), 'select tally.revoke_api_key($1)', [keyId]);
    const missing = await failure(persona(), 'select tally.revoke_api_key($1)', [unknown]);
    expect(foreign).toMatchObject({ code: '42501', hint: 'forbidden' });
    expect(foreign.message).not.toContain(account);
    expect(foreign.message).toContain(keyId);
    expect(missing).toEqual({ ...foreign, message: foreign.message.replace(keyId, unknown) });
    const { rows } = await db.pool.query('select revoked_at from tally.api_keys where id = $1', [keyId]);
    expect(rows[0].revoked_at).toBeNull();
  });

  it('a service caller is told api_key_not_found (P0002) for an unknown id', async () => {
    await expect(as(db.pool, service, (c) => c.query('select tally.revoke_api_key($1)', [randomUUID()]))).rejects.toMatchObject({
      code: 'P0002',
      hint: 'api_key_not_found',
    });
  });

  it('verify_api_key\'s refusals name no key id (the caller presented a secret)', async () => {
    const key = await as(db.pool, service, async (c) => (await c.query("select * from tally.create_api_key($1, 'to revoke')", [account])).rows[0]);
    await as(db.pool, user(owner), (c) => c.query('select tally.revoke_api_key($1)', [key.id]));
    const refused = await failure(service, 'select * from tally.verify_api_key($1)', [key.secret]);
    expect(refused).toMatchObject({ code: '28000', hint: 'revoked_api_key' });
    expect(refused.message).not.toContain(key.id);
    expect(refused.message).not.toContain(account);
  });
});

describe('external_id is for service callers only', () => {
  it('a signed-in user cannot probe other tenants\' external ids through duplicate_external_id', async () => {
    const taken = `stripe:${randomUUID()}`;
    await as(db.pool, service, (c) => c.query('select tally.create_account(p_name => $1, p_external_id => $2)', ['Other', taken]));
    const free = `stripe:${randomUUID()}`;
    for (const externalId of [taken, free]) {
      const refused = await failure(user(stranger), 'select tally.create_account(p_name => $1, p_external_id => $2)', ['Mine', externalId]);
      expect(refused).toEqual({ code: '42501', hint: 'forbidden', message: 'external_id: only a service caller sets external_id' });
    }
    const own = await as(db.pool, user(stranger), async (c) => (await c.query("select id from tally.create_account(p_name => 'Mine')")).rows[0].id);
    for (const externalId of [taken, free]) {
      const refused = await failure(user(stranger), 'select tally.update_account(p_account_id => $1, p_external_id => $2)', [own, externalId]);
      expect(refused).toEqual({ code: '42501', hint: 'forbidden', message: 'external_id: only a service caller sets external_id' });
    }
  });
});
