/**
 * Accounts, members and API keys, exercised through the personas that call them:
 * service callers, signed-in users with each role, non-members and anon.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { anon, as, createUser, service, user } from './helpers/personas.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/** n new users; typed as a tuple so destructuring needs no checks. */
async function createUsers<N extends 2 | 3 | 4>(n: N): Promise<[string, string, string, string]> {
  const ids = await Promise.all(Array.from({ length: n }, () => createUser(db.pool)));
  return ids as [string, string, string, string];
}

async function createAccount(owner: string | null, name = 'Acme', externalId: string | null = null): Promise<string> {
  const { rows } = await as(db.pool, service, (c) =>
    c.query('select id from tally.create_account(p_name => $1, p_external_id => $2, p_owner_id => $3::uuid)', [name, externalId, owner]),
  );
  return rows[0].id;
}

describe('accounts and members', () => {
  it('a user creates an account they own; the owner becomes a member', async () => {
    const alice = await createUser(db.pool);
    const account = await as(db.pool, user(alice), async (c) => {
      const { rows } = await c.query("select * from tally.create_account(p_name => ' Alice Co ', p_timezone => 'Europe/Paris')");
      return rows[0];
    });
    expect(account).toMatchObject({ name: 'Alice Co', timezone: 'Europe/Paris', external_id: null });
    const members = await db.pool.query('select user_id, role from tally.account_members where account_id = $1', [account.id]);
    expect(members.rows).toEqual([{ user_id: alice, role: 'owner' }]);
  });

  it('a user cannot create an account for someone else; anon cannot create at all', async () => {
    const [alice, bob] = await createUsers(2);
    await expect(
      as(db.pool, user(alice), (c) => c.query('select tally.create_account(p_name => $1, p_owner_id => $2::uuid)', ['x', bob])),
    ).rejects.toMatchObject({ code: '42501', hint: 'forbidden' });
    await expect(as(db.pool, anon, (c) => c.query("select tally.create_account(p_name => 'x')"))).rejects.toMatchObject({ code: '42501' });
  });

  it.each([
    [{ p_name: '' }, 'invalid_parameter', /name/],
    [{ p_name: 'x'.repeat(201) }, 'invalid_parameter', /name/],
    [{ p_name: 'ok', p_timezone: 'Mars/Olympus' }, 'invalid_timezone', /timezone/],
    [{ p_name: 'ok', p_timezone: 'EST5EDT; drop table x' }, 'invalid_timezone', /timezone/],
    [{ p_name: 'ok', p_owner_id: '00000000-0000-0000-0000-000000000000' }, 'user_not_found', /owner_id/],
  ])('create_account rejects %j with %s', async (args, code, message) => {
    const names = Object.keys(args);
    const sql = `select tally.create_account(${names.map((n, i) => `${n} => $${i + 1}`).join(', ')})`;
    await expect(as(db.pool, service, (c) => c.query(sql, Object.values(args)))).rejects.toMatchObject({ hint: code, message: expect.stringMatching(message) });
  });

  it('external_id is unique, with a conflict error', async () => {
    await createAccount(null, 'Portal 1', 'hubspot:123');
    await expect(createAccount(null, 'Portal 1 again', 'hubspot:123')).rejects.toMatchObject({ code: '23505', hint: 'duplicate_external_id' });
  });

  it('roles decide who manages members; the last owner stays', async () => {
    const [owner, admin, member, outsider] = await createUsers(4);
    const account = await createAccount(owner);
    const setMember = (actor: string, target: string, role: string) =>
      as(db.pool, user(actor), (c) => c.query('select tally.set_account_member($1, $2, $3)', [account, target, role]));

    await setMember(owner, admin, 'admin');
    await setMember(admin, member, 'member');
    await expect(setMember(member, outsider, 'viewer')).rejects.toMatchObject({ code: '42501', hint: 'forbidden' });
    await expect(setMember(outsider, outsider, 'viewer')).rejects.toMatchObject({ code: '42501', hint: 'forbidden' });
    await expect(setMember(admin, member, 'owner')).rejects.toMatchObject({ code: '42501', hint: 'forbidden' });
    await expect(setMember(admin, owner, 'member')).rejects.toMatchObject({ code: '42501', hint: 'forbidden' });
    await expect(setMember(owner, owner, 'admin')).rejects.toMatchObject({ code: '22023', hint: 'last_owner' });
    await expect(setMember(owner, member, 'superuser')).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });

    const remove = (actor: string, target: string) =>
      as(db.pool, user(actor), async (c) => (await c.query('select tally.remove_account_member($1, $2) as removed', [account, target])).rows[0].removed);
    await expect(remove(owner, owner)).rejects.toMatchObject({ hint: 'last_owner' });
    expect(await remove(member, member)).toBe(true); // anyone may leave
    expect(await remove(admin, member)).toBe(false); // already gone
    await expect(remove(admin, owner)).rejects.toMatchObject({ hint: 'forbidden' });

    await setMember(owner, admin, 'owner');
    expect(await remove(admin, owner)).toBe(true); // two owners: one may remove the other
    const { rows } = await db.pool.query('select user_id, role from tally.account_members where account_id = $1', [account]);
    expect(rows).toEqual([{ user_id: admin, role: 'owner' }]);
  });

  it('members read their accounts and co-members; non-members and anon read nothing', async () => {
    const [alice, bob, carol] = await createUsers(3);
    const a = await createAccount(alice, 'A');
    const b = await createAccount(bob, 'B');
    await as(db.pool, service, (c) => c.query("select tally.set_account_member($1, $2, 'viewer')", [a, bob]));

    const seen = async (who: string) =>
      as(db.pool, user(who), async (c) => ({
        accounts: (await c.query('select id from tally.accounts order by name')).rows.map((r) => r.id),
        members: (await c.query('select count(*)::int as n from tally.account_members')).rows[0].n,
      }));
    expect(await seen(alice)).toEqual({ accounts: [a], members: 2 });
    expect(await seen(bob)).toEqual({ accounts: [a, b], members: 3 });
    expect(await seen(carol)).toEqual({ accounts: [], members: 0 });
    await expect(as(db.pool, anon, (c) => c.query('select * from tally.accounts'))).rejects.toMatchObject({ code: '42501' });
  });

  it('API roles cannot write the tables directly', async () => {
    const alice = await createUser(db.pool);
    const a = await createAccount(alice);
    for (const persona of [user(alice), service]) {
      await expect(as(db.pool, persona, (c) => c.query("insert into tally.accounts (name) values ('direct')"))).rejects.toMatchObject({ code: '42501' });
      await expect(as(db.pool, persona, (c) => c.query("update tally.account_members set role = 'owner' where account_id = $1", [a]))).rejects.toMatchObject({ code: '42501' });
    }
  });
});

describe('API keys', () => {
  it('create_api_key returns a secret that authenticates, stored only as its SHA-256', async () => {
    const alice = await createUser(db.pool);
    const account = await createAccount(alice);
    const key = await as(db.pool, user(alice), async (c) => (await c.query("select * from tally.create_api_key($1, 'server')", [account])).rows[0]);
    expect(key.secret).toMatch(/^tk_[A-Za-z0-9_-]{40}$/);
    expect(key.prefix).toBe(key.secret.slice(0, 12));

    const stored = await db.pool.query("select encode(secret_hash, 'hex') as hash from tally.api_key_secrets where api_key_id = $1", [key.id]);
    const { createHash } = await import('node:crypto');
    expect(stored.rows[0].hash).toBe(createHash('sha256').update(key.secret).digest('hex'));
    for (const table of ['tally.api_keys', 'tally.api_key_secrets']) {
      const anywhere = await db.pool.query(`select count(*)::int as n from ${table} k where k::text like $1`, [`%${key.secret.slice(3)}%`]);
      expect(anywhere.rows[0].n).toBe(0);
    }

    const verified = await as(db.pool, service, async (c) => (await c.query('select * from tally.verify_api_key($1)', [key.secret])).rows[0]);
    expect(verified).toEqual({ api_key_id: key.id, account_id: account });
    await expect(as(db.pool, service, (c) => c.query('select * from tally.verify_api_key($1)', [key.secret + 'x']))).rejects.toMatchObject({
      code: '28000',
      hint: 'unknown_api_key',
    });
  });

  it('members read their keys with select *, without the hash; nobody reads the hash through the API', async () => {
    const [alice, bob] = await createUsers(2);
    const account = await createAccount(alice);
    await as(db.pool, service, (c) => c.query("select tally.set_account_member($1, $2, 'viewer')", [account, bob]));
    await as(db.pool, service, (c) => c.query("select tally.create_api_key($1, 'k1')", [account]));

    // supabase-js's default select() is `select *`
    const rows = await as(db.pool, user(bob), async (c) => (await c.query('select * from tally.api_keys')).rows);
    expect(rows).toHaveLength(1);
    expect(Object.keys(rows[0]).sort()).toEqual(['account_id', 'created_at', 'created_by', 'expires_at', 'id', 'name', 'prefix', 'revoked_at']);
    expect(await as(db.pool, service, async (c) => (await c.query('select * from tally.api_keys where account_id = $1', [account])).rows)).toHaveLength(1);
    for (const persona of [user(bob), service, anon]) {
      await expect(as(db.pool, persona, (c) => c.query('select * from tally.api_key_secrets'))).rejects.toMatchObject({ code: '42501' });
      await expect(as(db.pool, persona, (c) => c.query('select secret_hash from tally.api_key_secrets'))).rejects.toMatchObject({ code: '42501' });
    }
    const outsider = await createUser(db.pool);
    expect(await as(db.pool, user(outsider), async (c) => (await c.query('select id from tally.api_keys')).rows)).toEqual([]);
  });

  it('only owners and admins create or revoke keys; revoked and expired keys stop authenticating', async () => {
    const [owner, member] = await createUsers(2);
    const account = await createAccount(owner);
    await as(db.pool, service, (c) => c.query("select tally.set_account_member($1, $2, 'member')", [account, member]));
    await expect(as(db.pool, user(member), (c) => c.query("select tally.create_api_key($1, 'nope')", [account]))).rejects.toMatchObject({
      code: '42501',
    });
    const key = await as(db.pool, user(owner), async (c) => (await c.query("select * from tally.create_api_key($1, 'k')", [account])).rows[0]);
    await expect(as(db.pool, user(member), (c) => c.query('select tally.revoke_api_key($1)', [key.id]))).rejects.toMatchObject({ code: '42501' });

    const revokedAt = await as(db.pool, user(owner), async (c) => (await c.query('select tally.revoke_api_key($1) as at', [key.id])).rows[0].at);
    const again = await as(db.pool, user(owner), async (c) => (await c.query('select tally.revoke_api_key($1) as at', [key.id])).rows[0].at);
    expect(again).toEqual(revokedAt);
    await expect(as(db.pool, service, (c) => c.query('select * from tally.verify_api_key($1)', [key.secret]))).rejects.toMatchObject({
      hint: 'revoked_api_key',
    });

    const expiring = await as(db.pool, service, async (c) =>
      (await c.query("select * from tally.create_api_key($1, 'short', now() + interval '1 second')", [account])).rows[0],
    );
    await db.pool.query("update tally.api_keys set created_at = now() - interval '1 hour', expires_at = now() - interval '1 minute' where id = $1", [expiring.id]);
    await expect(as(db.pool, service, (c) => c.query('select * from tally.verify_api_key($1)', [expiring.secret]))).rejects.toMatchObject({
      hint: 'expired_api_key',
    });
    await expect(
      as(db.pool, service, (c) => c.query("select tally.create_api_key($1, 'past', now() - interval '1 day')", [account])),
    ).rejects.toMatchObject({ hint: 'invalid_parameter', message: expect.stringMatching(/expires_at/) });
  });

  it('authenticated users cannot verify keys', async () => {
    const alice = await createUser(db.pool);
    await expect(as(db.pool, user(alice), (c) => c.query("select tally.verify_api_key('tk_x')"))).rejects.toMatchObject({ code: '42501' });
  });
});
