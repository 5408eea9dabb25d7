/**
 * One error table: tally.error_codes (which tally._raise reads), ERROR_CODES in the
 * TypeScript client and docs/errors.md list the same codes, with the same SQLSTATEs, and
 * every code the migrations raise is in it.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, ERROR_TABLE, InvalidEventError, toTallyError } from '../src/client/errors.ts';
import { MIGRATIONS_DIR } from '../src/database/migrate.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let sqlTable: { code: string; sqlstate: string }[];
beforeAll(async () => {
  db = await migratedDatabase();
  sqlTable = (await db.pool.query('select code, sqlstate from tally.error_codes order by code')).rows;
});
afterAll(async () => {
  await db?.drop();
});

const migrations = () =>
  fs
    .readdirSync(MIGRATIONS_DIR)
    .filter((f) => f.endsWith('.sql'))
    .map((f) => ({ file: f, sql: fs.readFileSync(MIGRATIONS_DIR + f, 'utf8') }));

describe('one error table', () => {
  it('the TypeScript table lists exactly the SQL table\'s codes and SQLSTATEs', () => {
    const ts = Object.entries(ERROR_CODES)
      .map(([code, { sqlstate }]) => ({ code, sqlstate }))
      .sort((a, b) => (a.code < b.code ? -1 : 1));
    expect(ts).toEqual(sqlTable);
  });

  it('docs/errors.md lists every code, of SQL and of the TypeScript client', () => {
    const doc = fs.readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    const fallbacks = ERROR_TABLE.flatMap((r) => (r.fallbackCode ? [r.fallbackCode] : []));
    const missing = [...new Set([...sqlTable.map((r) => r.code), ...fallbacks])].filter((code) => !doc.includes(`\`${code}\``));
    expect(missing).toEqual([]);
  });

  it('every code a migration raises is in the table, with the SQLSTATE it was written with', () => {
    const table = new Map(sqlTable.map((r) => [r.code, r.sqlstate]));
    const problems: string[] = [];
    for (const { file, sql } of migrations()) {
      // tally._raise('code', 'SQLSTATE', ...) and tally._raise('code', ...)
      for (const m of sql.matchAll(/_raise\('([a-z_]+)',\s*'([^']*)'/g)) {
        const [, code, second] = m as unknown as [string, string, string];
        if (!table.has(code)) problems.push(`${file}: ${code} is not in tally.error_codes`);
        // (00005's revoke_api_key raised unknown_api_key with P0002; it now raises api_key_not_found)
        else if (/^[0-9A-Z]{5}$/.test(second) && table.get(code) !== second && !(code === 'unknown_api_key' && second === 'P0002'))
          problems.push(`${file}: ${code} raised with ${second}, the table says ${table.get(code)}`);
      }
      // RAISE ... USING ERRCODE = 'x', HINT = 'code'
      for (const m of sql.matchAll(/ERRCODE = '([0-9A-Z]{5})', HINT = '([a-z_]+)'/g)) {
        const [, sqlstate, code] = m as unknown as [string, string, string];
        if (table.get(code) !== sqlstate) problems.push(`${file}: ${code} raised with ${sqlstate}, the table says ${table.get(code)}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('tally._raise takes the SQLSTATE from the table, whatever a caller passes', async () => {
    for (const { code, sqlstate } of sqlTable) {
      await expect(db.pool.query("select tally._raise($1, 'x: message')", [code])).rejects.toMatchObject({ code: sqlstate, hint: code });
      await expect(db.pool.query("select tally._raise($1, '22000', 'x: message')", [code])).rejects.toMatchObject({ code: sqlstate, hint: code });
    }
    // a code the table lacks still reaches the caller
    await expect(db.pool.query("select tally._raise('not_a_code', 'x')")).rejects.toMatchObject({ code: 'P0001', hint: 'not_a_code' });
  });

  it('record_event\'s rejection SQLSTATEs agree with the table', async () => {
    const { rows } = await db.pool.query('select code, sqlstate, tally._reject_sqlstate(code) as rejected from tally.error_codes');
    const eventCodes = Object.entries(ERROR_CODES).filter(([, v]) => v.error === InvalidEventError).map(([c]) => c);
    for (const code of [...eventCodes, 'unknown_api_key', 'revoked_api_key', 'expired_api_key', 'account_not_found']) {
      const row = rows.find((r) => r.code === code);
      expect(row, code).toBeDefined();
      expect(row.rejected, code).toBe(row.sqlstate);
    }
  });

  it('each table code becomes its class in the client', () => {
    for (const { code, sqlstate } of sqlTable) {
      const e = toTallyError({ code: sqlstate, hint: code, message: 'x: y' });
      expect(e.code).toBe(code);
      expect(e).toBeInstanceOf(ERROR_CODES[code]!.error);
    }
  });
});
