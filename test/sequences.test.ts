/**
 * A database whose DBA granted everything to the API roles by default, before Tally was
 * installed: the migrations still leave anon and authenticated without any way to move a
 * sequence (which would make run_rollups skip events) or to TRUNCATE a table (which
 * row-level security does not filter), and the catalog rules hold for every relation kind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../src/database/migrate.ts';
import { privilegeViolations } from './helpers/catalog.ts';
import { emptyDatabase, type TestDatabase } from './helpers/db.ts';
import { anon, as, createUser, service, user, type Persona } from './helpers/personas.ts';

let db: TestDatabase;
let alice: string;
beforeAll(async () => {
  db = await emptyDatabase();
  // the roles are cluster-wide: another database's migration may have made them already
  await db.pool.query(`do $$ begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then create role anon nologin noinherit; end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then create role authenticated nologin noinherit; end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then create role service_role nologin noinherit; end if;
  exception when duplicate_object or unique_violation then null; end $$`);
  // broad defaults, set before the migrations run (these are per database)
  for (const kind of ['tables', 'sequences', 'functions']) {
    await db.pool.query(`alter default privileges grant all on ${kind} to anon, authenticated, service_role`);
  }
  await runMigrations(db.url);
  alice = await createUser(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

describe('privileges under broad default privileges', () => {
  it('the defaults were really in force when the migrations ran', async () => {
    const { rows } = await db.pool.query(
      `select defaclobjtype::text as kind from pg_default_acl where defaclnamespace = 0 and defaclacl::text like '%anon=%' order by defaclobjtype::text collate "C"`,
    );
    expect(rows.map((r) => r.kind)).toEqual(['S', 'f', 'r']);
  });

  it('no rule on any relation kind is broken', async () => {
    expect(await privilegeViolations(db.pool)).toEqual([]);
  });

  const personas: [string, () => Persona][] = [
    ['anon', () => anon],
    ['authenticated', () => user(alice)],
  ];

  it.each(personas)('%s cannot setval or nextval any of Tally\'s sequences (42501)', async (_name, persona) => {
    const { rows } = await db.pool.query("select oid::regclass::text as seq from pg_class where relnamespace = 'tally'::regnamespace and relkind = 'S' order by 1");
    expect(rows.map((r) => r.seq)).toContain('tally.events_id_seq');
    for (const { seq } of rows) {
      await expect(as(db.pool, persona(), (c) => c.query('select setval($1::regclass, 1)', [seq])), seq).rejects.toMatchObject({ code: '42501' });
      await expect(as(db.pool, persona(), (c) => c.query('select nextval($1::regclass)', [seq])), seq).rejects.toMatchObject({ code: '42501' });
      await expect(as(db.pool, persona(), (c) => c.query(`select last_value from ${seq}`)), seq).rejects.toMatchObject({ code: '42501' });
    }
  });

  it.each(personas)('%s cannot TRUNCATE auth.users or any table of Tally (42501)', async (_name, persona) => {
    const { rows } = await db.pool.query(
      "select c.oid::regclass::text as rel from pg_class c where c.relnamespace in ('tally'::regnamespace, 'auth'::regnamespace) and c.relkind in ('r', 'p') order by 1",
    );
    expect(rows.map((r) => r.rel)).toContain('auth.users');
    for (const { rel } of rows) {
      await expect(as(db.pool, persona(), (c) => c.query(`truncate ${rel} cascade`)), rel).rejects.toMatchObject({ code: '42501' });
    }
    const users = await db.pool.query('select count(*)::int as n from auth.users');
    expect(users.rows[0].n).toBe(1);
  });

  it('events still get ids and roll up: the sequences serve Tally\'s own functions', async () => {
    const account = await as(db.pool, service, async (c) => (await c.query("select id from tally.create_account(p_name => 'seq')")).rows[0].id);
    await as(db.pool, service, (c) =>
      c.query('select tally.record_events($1::jsonb)', [JSON.stringify([{ account_id: account, event_type: 'api_request' }])]),
    );
    const seq = await db.pool.query('select is_called from tally.events_id_seq');
    expect(seq.rows[0].is_called).toBe(true);
    await as(db.pool, service, (c) => c.query('select * from tally.run_rollups()'));
    const hourly = await db.pool.query('select sum(requests)::int as n from tally.usage_hourly where account_id = $1', [account]);
    expect(hourly.rows[0].n).toBe(1);
  });
});
