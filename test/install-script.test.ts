import { afterAll, describe, expect, it } from 'vitest';
import { installScript, runMigrations } from '../src/database/migrate.ts';
import { withTransaction } from '../src/database/transaction.ts';
import { dumpCatalog } from './helpers/catalog.ts';
import { emptyDatabase, type TestDatabase } from './helpers/db.ts';

const dbs: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dbs.map((db) => db.drop()));
});

describe('tally sql', () => {
  it('applied to a fresh database yields the same schema as tally migrate, which then has nothing to do', async () => {
    const [viaMigrate, viaScript] = await Promise.all([emptyDatabase(), emptyDatabase()]);
    dbs.push(viaMigrate, viaScript);

    await runMigrations(viaMigrate.url);
    await viaScript.pool.query(await installScript());

    const expected = await dumpCatalog(viaMigrate.pool);
    expect(await dumpCatalog(viaScript.pool)).toEqual(expected);
    expect(JSON.stringify(expected)).toContain('record_job_run'); // the dump really covers the schema

    const after = await runMigrations(viaScript.url);
    expect(after.applied).toEqual([]);
  });

  it('without its transaction wrapper, inside a caller transaction, yields the same schema', async () => {
    const [viaMigrate, viaBare] = await Promise.all([emptyDatabase(), emptyDatabase()]);
    dbs.push(viaMigrate, viaBare);
    await runMigrations(viaMigrate.url);

    const script = await installScript({ transaction: false });
    expect(script).not.toMatch(/^BEGIN;$/m);
    const client = await viaBare.pool.connect();
    try {
      await withTransaction(client, () => client.query(script));
    } finally {
      client.release();
    }
    expect(await dumpCatalog(viaBare.pool)).toEqual(await dumpCatalog(viaMigrate.pool));
  });

  it('is all-or-nothing: a failure part-way leaves no tally schema behind', async () => {
    const db = await emptyDatabase();
    dbs.push(db);
    const script = (await installScript()).replace('COMMIT;', 'select 1/0;\nCOMMIT;');
    await expect(db.pool.query(script)).rejects.toThrow(/division by zero/);
    const { rows } = await db.pool.query("select to_regnamespace('tally') as ns");
    expect(rows[0].ns).toBeNull();
  });
});
