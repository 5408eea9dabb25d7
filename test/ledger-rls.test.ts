/**
 * Who reads and writes the ledger: members read their accounts' events, keys (without the
 * hash) and dead letters; non-members and anon read nothing; no API role writes the
 * tables, and only services run ingestion. API keys attribute events to their account,
 * and a revoked or expired key stops attributing new ones.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, createApiKey, DAY, HOUR, isoFromNow, MINUTE, recordEvents } from './helpers/ledger.ts';
import { anon, as, createUser, service, user, type Persona } from './helpers/personas.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

const read = (persona: Persona, sql: string, values: unknown[] = []) => as(db.pool, persona, async (c) => (await c.query(sql, values)).rows);

describe('reading the ledger', () => {
  let alice: string; // owner of A
  let bob: string; // viewer of A, owner of B
  let carol: string; // member of nothing
  let a: string;
  let b: string;

  beforeAll(async () => {
    [alice, bob, carol] = [await createUser(db.pool), await createUser(db.pool), await createUser(db.pool)];
    a = await createAccount(db.pool, 'RLS A', alice);
    b = await createAccount(db.pool, 'RLS B', bob);
    await as(db.pool, service, (c) => c.query("select tally.set_account_member($1, $2, 'viewer')", [a, bob]));
    await createApiKey(db.pool, a, 'key of A');
    await createApiKey(db.pool, b, 'key of B');
    const result = await recordEvents(db.pool, [
      { account_id: a, event_type: 'a.1' },
      { account_id: a, event_type: 'a.2' },
      { account_id: b, event_type: 'b.1' },
      { account_id: a, event_type: 'a.bad', tokens_in: -1 },
      { account_id: b, event_type: 'b.bad', tokens_in: -1 },
      { event_type: 'nobody' },
    ]);
    expect(result).toMatchObject({ accepted: 3 });
    expect(result.rejected).toHaveLength(3);
  });

  it('members read the events of their accounts only', async () => {
    const events = (who: string) => read(user(who), 'select event_type from tally.events order by event_type').then((rows) => rows.map((r) => r.event_type));
    expect(await events(alice)).toEqual(['a.1', 'a.2']);
    expect(await events(bob)).toEqual(['a.1', 'a.2', 'b.1']);
    expect(await events(carol)).toEqual([]);
    const counted = await read(user(carol), 'select count(*)::int as n from tally.events where account_id = $1', [a]);
    expect(counted).toEqual([{ n: 0 }]);
  });

  it('members read the dead letters of their accounts only', async () => {
    const dead = (who: string) =>
      read(user(who), "select payload->>'event_type' as t, code from tally.rejected_events order by 1").then((rows) => rows.map((r) => `${r.t}:${r.code}`));
    expect(await dead(alice)).toEqual(['a.bad:out_of_range']);
    expect(await dead(bob)).toEqual(['a.bad:out_of_range', 'b.bad:out_of_range']);
    expect(await dead(carol)).toEqual([]);
    // a refusal that names no account is for services only
    const all = await read(service, "select code from tally.rejected_events where payload->>'event_type' = 'nobody'");
    expect(all).toEqual([{ code: 'missing_tenant' }]);
  });

  it('members read their keys without the hash', async () => {
    expect(await read(user(alice), 'select name, prefix from tally.api_keys order by name')).toEqual([{ name: 'key of A', prefix: expect.stringMatching(/^tk_/) }]);
    expect(await read(user(carol), 'select name from tally.api_keys')).toEqual([]);
    await expect(read(user(alice), 'select secret_hash from tally.api_key_secrets')).rejects.toMatchObject({ code: '42501' });
  });

  it('anon reads nothing', async () => {
    for (const table of ['events', 'events_default', 'rejected_events', 'api_keys', 'idempotency_keys', 'model_prices', 'settings']) {
      await expect(read(anon, `select 1 from tally.${table} limit 1`), table).rejects.toMatchObject({ code: '42501' });
    }
  });

  it('signed-in users read no partition, key claim or setting directly', async () => {
    const partitions = await db.pool.query(
      "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'tally.events'::regclass order by 1",
    );
    expect(partitions.rows.length).toBeGreaterThan(1);
    for (const table of [...partitions.rows.map((r) => r.relname as string), 'idempotency_keys', 'settings']) {
      await expect(read(user(alice), `select 1 from tally.${table} limit 1`), table).rejects.toMatchObject({ code: '42501' });
    }
    // prices are reference data
    expect(await read(user(carol), 'select count(*)::int as n from tally.model_prices')).toEqual([{ n: 0 }]);
  });
});

describe('writing the ledger', () => {
  let alice: string;
  let a: string;
  beforeAll(async () => {
    alice = await createUser(db.pool);
    a = await createAccount(db.pool, 'Writes', alice);
    await recordEvents(db.pool, [{ account_id: a, event_type: 'existing', idempotency_key: 'existing' }]);
  });

  it('no API role writes the ledger tables directly', async () => {
    const writes = [
      "insert into tally.events (account_id, occurred_at, event_type, success) values ($1, now(), 'direct', true)",
      "update tally.events set quantity = 0 where account_id = $1",
      'delete from tally.events where account_id = $1',
      "insert into tally.idempotency_keys (account_id, idempotency_key, occurred_at) values ($1, 'k', now())",
      'delete from tally.idempotency_keys where account_id = $1',
      "insert into tally.rejected_events (account_id, source, code, message, payload) values ($1, 's', 'c', 'm', '{}')",
      'delete from tally.rejected_events where account_id = $1',
      "insert into tally.model_prices (provider, model, effective_from, input_usd_per_mtok, output_usd_per_mtok) select 'p', 'm', now(), 0, 0 where $1::uuid is not null",
      "update tally.settings set value = '1' where $1::uuid is not null",
    ];
    for (const persona of [user(alice), anon, service]) {
      for (const sql of writes) {
        await expect(read(persona, sql, [a]), `${persona.role}: ${sql}`).rejects.toMatchObject({ code: '42501' });
      }
    }
    const { rows } = await db.pool.query('select count(*)::int as n, sum(quantity)::int as q from tally.events where account_id = $1', [a]);
    expect(rows[0]).toEqual({ n: 1, q: 1 });
  });

  it.each([
    ['record_events', "select tally.record_events('[]'::jsonb)"],
    ['record_event', `select * from tally.record_event('{"event_type": "x"}'::jsonb)`],
    ['import_events', "select tally.import_events('[]'::jsonb, 'f.csv')"],
    ['ensure_partitions', 'select tally.ensure_partitions()'],
    ['purge_idempotency_keys', 'select tally.purge_idempotency_keys()'],
    ['reprice', "select tally.reprice(now() - interval '1 day', now())"],
    ['set_model_price', "select tally.set_model_price('p', 'm', 1, 1)"],
    ['set_setting', "select tally.set_setting('ingest.max_batch', '1')"],
    ['verify_api_key', "select * from tally.verify_api_key('tk_x')"],
  ])('neither authenticated nor anon may execute %s', async (_name, sql) => {
    await expect(read(user(alice), sql)).rejects.toMatchObject({ code: '42501' });
    await expect(read(anon, sql)).rejects.toMatchObject({ code: '42501' });
  });

  it('services execute the ingestion functions', async () => {
    expect(await read(service, "select tally.record_events('[]'::jsonb) as r")).toEqual([{ r: { accepted: 0, duplicates: 0, conflicts: [], rejected: [] } }]);
  });
});

describe('API keys and events', () => {
  it('no API role can read a key hash, from any table or function', async () => {
    const columns = await db.pool.query(`
      select c.relname, a.attname, r.role
      from pg_class c
      join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
      cross join (values ('anon'), ('authenticated'), ('service_role')) r(role)
      where c.relnamespace = 'tally'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f')
        and (a.atttypid = 'bytea'::regtype or a.attname like '%hash%' or a.attname like '%secret%')
        and has_column_privilege(r.role, c.oid, a.attnum, 'SELECT')`);
    expect(columns.rows).toEqual([]);
    // functions an API role may call: none returns bytea, a hash or the key row type
    const functions = await db.pool.query(`
      select p.oid::regprocedure::text as fn
      from pg_proc p
      where p.pronamespace = 'tally'::regnamespace
        and (has_function_privilege('anon', p.oid, 'EXECUTE') or has_function_privilege('authenticated', p.oid, 'EXECUTE')
             or has_function_privilege('service_role', p.oid, 'EXECUTE'))
        and (p.prorettype in ('bytea'::regtype, 'tally.api_keys'::regtype)
             or exists (select 1 from unnest(coalesce(p.proallargtypes, '{}'), coalesce(p.proargmodes, '{}'), coalesce(p.proargnames, '{}')) as o(t, m, n)
                        where m in ('o', 't', 'b') and (t = 'bytea'::regtype or n like '%hash%')))`);
    expect(functions.rows).toEqual([]);
  });

  it('a key authenticates, and events carrying its id belong to its account', async () => {
    const owner = await createUser(db.pool);
    const account = await createAccount(db.pool, 'Keyed', owner);
    const key = await as(db.pool, user(owner), async (c) => (await c.query("select * from tally.create_api_key($1, 'app server')", [account])).rows[0]);
    const verified = await read(service, 'select * from tally.verify_api_key($1)', [key.secret]);
    expect(verified).toEqual([{ api_key_id: key.id, account_id: account }]);

    const result = await recordEvents(db.pool, [
      { api_key_id: key.id, event_type: 'by.key' },
      { api_key_id: key.id.toUpperCase(), account_id: account, event_type: 'by.both' },
    ]);
    expect(result).toEqual({ accepted: 2, duplicates: 0, rejected: [] });
    const rows = await read(user(owner), 'select event_type, account_id, api_key_id from tally.events order by event_type');
    expect(rows).toEqual([
      { event_type: 'by.both', account_id: account, api_key_id: key.id },
      { event_type: 'by.key', account_id: account, api_key_id: key.id },
    ]);
    // the secret went nowhere: neither events nor dead letters nor key rows hold it
    const leaks = await db.pool.query(
      `select (select count(*) from tally.events e where e::text like $1) + (select count(*) from tally.rejected_events r where r::text like $1)
            + (select count(*) from tally.api_keys k where k::text like $1) as n`,
      [`%${key.secret.slice(3)}%`],
    );
    expect(leaks.rows[0].n).toBe('0');
  });

  it('a revoked key attributes events that occurred before its revocation, and no later ones', async () => {
    const account = await createAccount(db.pool, 'Revoked');
    const key = await createApiKey(db.pool, account, 'to revoke');
    const [{ at }] = await read(
      service,
      `select to_char(tally.revoke_api_key($1) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as at`,
      [key.id],
    );
    const result = await recordEvents(db.pool, [
      { api_key_id: key.id, event_type: 'before', occurred_at: isoFromNow(-DAY) },
      { api_key_id: key.id, event_type: 'at', occurred_at: at },
      { api_key_id: key.id, event_type: 'now' },
      { api_key_id: key.id, account_id: account, event_type: 'now.with.account' },
    ]);
    expect(result.accepted).toBe(1);
    expect(result.rejected.map((r) => [r.index, r.code])).toEqual([
      [1, 'revoked_api_key'],
      [2, 'revoked_api_key'],
      [3, 'revoked_api_key'],
    ]);
    const rows = await db.pool.query('select event_type from tally.events where account_id = $1', [account]);
    expect(rows.rows).toEqual([{ event_type: 'before' }]);
  });

  it('an expired key attributes events that occurred before it expired, and no later ones', async () => {
    const account = await createAccount(db.pool, 'Expired');
    const key = await createApiKey(db.pool, account, 'short-lived', isoFromNow(HOUR));
    await db.pool.query("update tally.api_keys set created_at = now() - interval '3 days', expires_at = now() - interval '1 day' where id = $1", [key.id]);
    const result = await recordEvents(db.pool, [
      { api_key_id: key.id, event_type: 'before', occurred_at: isoFromNow(-2 * DAY) },
      { api_key_id: key.id, event_type: 'after', occurred_at: isoFromNow(-MINUTE) },
      { api_key_id: key.id, event_type: 'now' },
    ]);
    expect(result).toMatchObject({ accepted: 1, rejected: [{ index: 1, code: 'expired_api_key' }, { index: 2, code: 'expired_api_key' }] });
    await expect(read(service, 'select * from tally.verify_api_key($1)', [key.secret])).rejects.toMatchObject({ code: '28000', hint: 'expired_api_key' });
  });

  it('an item naming one account and a key of another is refused as a mismatch', async () => {
    const [a, b] = [await createAccount(db.pool, 'Mismatch A'), await createAccount(db.pool, 'Mismatch B')];
    const key = await createApiKey(db.pool, a, 'of A');
    const result = await recordEvents(db.pool, [{ account_id: b, api_key_id: key.id, event_type: 'x' }]);
    expect(result).toMatchObject({ accepted: 0, rejected: [{ index: 0, code: 'account_mismatch', message: expect.stringMatching(/api_key_id/) }] });
    // the refusal is filed under the key's account: its owners see the misuse, B learns nothing about A
    const filed = await db.pool.query("select account_id, message from tally.rejected_events where code = 'account_mismatch' and payload->>'api_key_id' = $1", [key.id]);
    expect(filed.rows).toHaveLength(1);
    expect(filed.rows[0].account_id).toBe(a);
    expect(filed.rows[0].message).not.toContain(a);
    const rows = await db.pool.query('select count(*)::int as n from tally.events where account_id = any($1::uuid[])', [[a, b]]);
    expect(rows.rows[0].n).toBe(0);
  });
});
