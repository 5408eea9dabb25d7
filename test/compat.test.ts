/**
 * Both kinds of database: one that already has Supabase's auth schema and roles keeps
 * them untouched; a bare one gets the shim, which reads request.jwt.claims like Supabase.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../src/database/migrate.ts';
import { withTransaction } from '../src/database/transaction.ts';
import { emptyDatabase, type TestDatabase } from './helpers/db.ts';

const dbs: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dbs.map((db) => db.drop()));
});

// Supabase's own definitions (supabase/postgres, auth schema), plus columns of auth.users
// that the shim does not have, so a replaced table would be noticed.
const SUPABASE_AUTH = `
do $$ begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then create role anon nologin noinherit; end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then create role authenticated nologin noinherit; end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then create role service_role nologin noinherit bypassrls; end if;
exception when duplicate_object or unique_violation then null;
end $$;
create schema auth;
grant usage on schema auth to anon, authenticated, service_role;
create table auth.users (
  instance_id uuid, id uuid not null primary key, aud varchar(255), role varchar(255),
  email varchar(255), encrypted_password varchar(255), raw_user_meta_data jsonb,
  created_at timestamptz, updated_at timestamptz
);
create function auth.uid() returns uuid language sql stable as $f$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$f$;
create function auth.role() returns text language sql stable as $f$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$f$;
create function auth.jwt() returns jsonb language sql stable as $f$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$f$;
comment on function auth.uid() is 'Supabase original';
`;

const SNAPSHOT = `
select jsonb_build_object(
  'functions', (select jsonb_agg(jsonb_build_array(p.oid::int, p.proname, pg_get_functiondef(p.oid), obj_description(p.oid, 'pg_proc'), p.proacl::text) order by p.proname)
                from pg_proc p where p.pronamespace = 'auth'::regnamespace),
  'columns', (select jsonb_agg(jsonb_build_array(a.attname, format_type(a.atttypid, a.atttypmod)) order by a.attnum)
              from pg_attribute a where a.attrelid = 'auth.users'::regclass and a.attnum > 0 and not a.attisdropped),
  'users_oid', 'auth.users'::regclass::oid::int,
  'users_rls', (select relrowsecurity from pg_class where oid = 'auth.users'::regclass),
  'schema_acl', (select nspacl::text from pg_namespace where nspname = 'auth'),
  'roles', (select jsonb_agg(jsonb_build_array(rolname, rolcanlogin, rolbypassrls, rolinherit) order by rolname)
            from pg_roles where rolname in ('anon', 'authenticated', 'service_role'))
) as snapshot`;

describe('Supabase compatibility', () => {
  it('leaves an existing Supabase auth schema and roles untouched', async () => {
    const db = await emptyDatabase();
    dbs.push(db);
    await db.pool.query(SUPABASE_AUTH);
    const before = (await db.pool.query(SNAPSHOT)).rows[0].snapshot;
    await runMigrations(db.url);
    const after = (await db.pool.query(SNAPSHOT)).rows[0].snapshot;
    expect(after).toEqual(before);
    expect(after.functions.map((f: unknown[]) => f[3])).toContain('Supabase original');
  });

  it('gives a bare database the roles and an auth shim that reads request.jwt.claims', async () => {
    const db = await emptyDatabase();
    dbs.push(db);
    await runMigrations(db.url);

    const roles = await db.pool.query(
      "select rolname, rolcanlogin from pg_roles where rolname in ('anon', 'authenticated', 'service_role') order by rolname",
    );
    expect(roles.rows).toEqual([
      { rolname: 'anon', rolcanlogin: false },
      { rolname: 'authenticated', rolcanlogin: false },
      { rolname: 'service_role', rolcanlogin: false },
    ]);

    const sub = '6f1c1e5e-8f3a-4a53-9a8e-2d3c4b5a6f70';
    const client = await db.pool.connect();
    try {
      await withTransaction(client, async () => {
        await client.query('set local role authenticated');
        await client.query("select set_config('request.jwt.claims', $1, true)", [JSON.stringify({ sub, role: 'authenticated', email: 'a@example.com' })]);
        const { rows } = await client.query('select auth.uid() as uid, auth.role() as role, auth.jwt() ->> $1 as email', ['email']);
        expect(rows[0]).toEqual({ uid: sub, role: 'authenticated', email: 'a@example.com' });
      });

      // After the transaction the setting reads as '' (not NULL): the shim maps it to NULL.
      const after = await client.query('select auth.uid() as uid, auth.role() as role, auth.jwt() as jwt');
      expect(after.rows[0]).toEqual({ uid: null, role: null, jwt: null });
    } finally {
      client.release();
    }
  });

  it('revokes what Supabase-style default privileges grant to the API roles', async () => {
    const db = await emptyDatabase();
    dbs.push(db);
    // Supabase grants every new function and table to its API roles by default.
    await db.pool.query('alter default privileges grant all on functions to anon, authenticated, service_role');
    await db.pool.query('alter default privileges grant all on tables to anon, authenticated, service_role');
    await runMigrations(db.url);
    const { rows } = await db.pool.query(`
      select p.oid::regprocedure::text as fn, r.rolname from pg_proc p cross join pg_roles r
      where p.pronamespace = 'tally'::regnamespace and r.rolname in ('anon', 'authenticated')
        and has_function_privilege(r.oid, p.oid, 'EXECUTE')
      order by 1, 2`);
    // Only what the migrations grant on purpose remains.
    expect(rows.filter((r) => r.rolname === 'anon')).toEqual([]);
    expect(rows.map((r) => r.fn)).not.toContain('tally.verify_api_key(text)');
    expect(rows.map((r) => r.fn)).not.toContain('tally.record_job_run(text,timestamp with time zone,timestamp with time zone,boolean,jsonb,text)');
    const writable = await db.pool.query(`
      select c.relname from pg_class c
      where c.relnamespace = 'tally'::regnamespace and c.relkind in ('r', 'p')
        and has_table_privilege('authenticated', c.oid, 'INSERT, UPDATE, DELETE')`);
    expect(writable.rows).toEqual([]);
  });
});
