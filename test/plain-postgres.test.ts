/**
 * docs/supabase.md's plain-PostgreSQL setup, run word for word: the SQL blocks of its
 * section "Plain PostgreSQL" in order, the first as the installer, the others as the app's
 * new login role. Only the role name is made unique (roles are cluster-wide and other test
 * files run at the same time).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../src/database/migrate.ts';
import { emptyDatabase, type TestDatabase } from './helpers/db.ts';

const DOC = fs.readFileSync(new URL('../docs/supabase.md', import.meta.url), 'utf8');
const ROLE = `my_app_${randomBytes(4).toString('hex')}`;
const USER_ID = '6f1c1e5e-8f3a-4a53-9a8e-2d3c4b5a6f70';

/** The ```sql blocks of the section, with the role name replaced. */
function blocks(): string[] {
  const start = DOC.indexOf('## Plain PostgreSQL');
  const end = DOC.indexOf('\n## ', start + 1);
  const section = DOC.slice(start, end === -1 ? undefined : end);
  return [...section.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]!.replace(/\bmy_app\b/g, ROLE));
}

let db: TestDatabase;
let app: pg.Client;
beforeAll(async () => {
  db = await emptyDatabase();
  await runMigrations(db.url);
});
afterAll(async () => {
  await app?.end().catch(() => undefined);
  await db?.drop();
  const admin = new pg.Client({ connectionString: db?.url.replace(/\/[^/]*$/, '/postgres') });
  await admin.connect();
  await admin.query(`DROP ROLE IF EXISTS ${ROLE}`).finally(() => admin.end());
});

/** The rows of the last statement that returned any. */
function lastRows(result: pg.QueryResult | pg.QueryResult[]): Record<string, unknown>[] {
  const all = Array.isArray(result) ? result : [result];
  return [...all].reverse().find((r) => r.command === 'SELECT')?.rows ?? [];
}

describe('plain PostgreSQL, as docs/supabase.md says', () => {
  it('has the four blocks the test follows', () => {
    expect(blocks()).toHaveLength(4);
  });

  it('1: the installer creates the app\'s login role', async () => {
    await db.pool.query(blocks()[0]!);
    const url = new URL(db.url);
    url.username = ROLE;
    url.password = 'change-me';
    app = new pg.Client({ connectionString: url.toString() });
    await app.connect();
    expect((await app.query('select current_user as u')).rows[0].u).toBe(ROLE);
  });

  it('2: the app fills auth.users', async () => {
    await app.query(blocks()[1]!);
    await app.query(blocks()[1]!); // idempotent
    expect((await db.pool.query('select id, email from auth.users')).rows).toEqual([{ id: USER_ID, email: 'ada@example.com' }]);
  });

  it('3: without SET ROLE the app is a service caller', async () => {
    const result = await app.query(blocks()[2]!);
    const all = Array.isArray(result) ? result : [result];
    expect(all[0]!.rows).toHaveLength(1);
    expect(lastRows(result)[0]).toMatchObject({ record_events: { accepted: 1 } });
    const members = await db.pool.query('select user_id, role from tally.account_members');
    expect(members.rows).toEqual([{ user_id: USER_ID, role: 'owner' }]);
  });

  it('4: as the signed-in user it reads only that user\'s accounts', async () => {
    // another tenant's usage, which the user must not see
    const other = (await app.query("select id from tally.create_account(p_name => 'Someone else')")).rows[0].id;
    await app.query('select tally.record_events($1::jsonb)', [JSON.stringify([{ account_id: other, event_type: 'api_request' }])]);

    const rows = lastRows(await app.query(blocks()[3]!));
    expect(rows).toEqual([{ name: "Ada's team", requests: '1' }]);
    // the claims and the role ended with the transaction
    expect((await app.query("select current_user as u, auth.uid() as uid")).rows[0]).toEqual({ u: ROLE, uid: null });
  });

  it('the app\'s role is a user only inside such a transaction: no claims, no rows', async () => {
    await app.query('begin');
    try {
      await app.query('set local role authenticated');
      expect((await app.query('select count(*)::int as n from tally.usage_daily_live')).rows[0].n).toBe(0);
      await expect(app.query("select tally.create_account(p_name => 'no user')")).rejects.toMatchObject({ code: '42501', hint: 'forbidden' });
    } finally {
      await app.query('rollback');
    }
  });
});
