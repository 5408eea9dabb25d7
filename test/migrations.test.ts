import { afterEach, describe, expect, it } from 'vitest';
import { migrationFiles, readSchemaVersion, runMigrations } from '../src/database/migrate.ts';
import { emptyDatabase, type TestDatabase } from './helpers/db.ts';

const dbs: TestDatabase[] = [];
async function fresh(): Promise<TestDatabase> {
  const db = await emptyDatabase();
  dbs.push(db);
  return db;
}
afterEach(async () => {
  await Promise.all(dbs.splice(0).map((db) => db.drop()));
});

describe('migrations', async () => {
  const latest = (await migrationFiles()).at(-1)!.id;

  it('apply to an empty database, and a second run applies nothing', async () => {
    const db = await fresh();
    const first = await runMigrations(db.url);
    expect(first.applied.map((m) => m.id)).toEqual(Array.from({ length: latest }, (_, i) => i + 1));
    expect(first.version).toBe(latest);

    const second = await runMigrations(db.url);
    expect(second.applied).toEqual([]);
    expect(second.version).toBe(latest);

    const { rows } = await db.pool.query('select count(*)::int as n from tally.migrations');
    expect(rows[0].n).toBe(latest + 1); // + the runner's own migration 0
  });

  it('two concurrent runs both succeed and apply each migration once', async () => {
    const db = await fresh();
    const [a, b] = await Promise.all([runMigrations(db.url), runMigrations(db.url)]);
    expect(a.version).toBe(latest);
    expect(b.version).toBe(latest);
    expect(a.applied.length + b.applied.length).toBe(latest);
    const { rows } = await db.pool.query('select id, count(*)::int as n from tally.migrations group by id having count(*) > 1');
    expect(rows).toEqual([]);
  });

  it('keeps its bookkeeping in schema tally, untouched by a user table public.migrations', async () => {
    const db = await fresh();
    await db.pool.query('create table public.migrations (id text primary key, note text)');
    await db.pool.query("insert into public.migrations values ('mine', 'the app''s own table')");
    await runMigrations(db.url);
    const { rows } = await db.pool.query('select * from public.migrations');
    expect(rows).toEqual([{ id: 'mine', note: "the app's own table" }]);
    const client = await db.pool.connect();
    try {
      expect(await readSchemaVersion(client)).toBe(latest);
    } finally {
      client.release();
    }
  });

  it('refuses to run when an applied migration was edited', async () => {
    const db = await fresh();
    await runMigrations(db.url);
    await db.pool.query("update tally.migrations set hash = repeat('0', 40) where id = 1");
    await expect(runMigrations(db.url)).rejects.toMatchObject({ code: 'migration_failed', message: expect.stringMatching(/Hashes don't match/) });
  });

  it('reports an unreachable server with a stable code', async () => {
    await expect(runMigrations('postgres://postgres@127.0.0.1:1/none')).rejects.toMatchObject({ code: 'database_unreachable' });
  });
});
