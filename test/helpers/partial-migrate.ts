/**
 * Installs the migrations whose file names sort before `fileName` (postgres-migrations wants
 * consecutive ids, so always a prefix), the way `tally migrate` does, so that a test can put
 * data in an older schema and then apply the rest with runMigrations.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrate } from 'postgres-migrations';
import { MIGRATIONS_DIR } from '../../src/database/migrate.ts';

export async function migrateBefore(url: string, fileName: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-partial-'));
  try {
    for (const f of fs.readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql') && f < fileName)) {
      fs.copyFileSync(path.join(MIGRATIONS_DIR, f), path.join(dir, f));
    }
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS tally;
        CREATE TABLE IF NOT EXISTS tally.migrations (id integer PRIMARY KEY, name varchar(100) UNIQUE NOT NULL,
          hash varchar(40) NOT NULL, executed_at timestamp DEFAULT current_timestamp)`);
      await client.query('SET search_path TO tally');
      await migrate({ client }, dir);
    } finally {
      await client.end();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
