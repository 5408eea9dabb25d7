/**
 * `tally import` on a slow stream: rows are committed by time as well as by size, a
 * Ctrl-C reports exactly the blank lines it skipped and the lines it read but did not
 * store; imports create the partitions their rows need and count idempotency conflicts.
 */
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { importFile, type ImportSummary } from '../src/ingest/import.ts';
import { TALLY_BIN, cleanEnv } from './helpers/cli.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { DAY } from './helpers/ledger.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

async function createAccount(name: string): Promise<string> {
  const { rows } = await db.pool.query<{ id: string }>('select id from tally.create_account(p_name => $1)', [name]);
  return rows[0]!.id;
}

const countOf = async (account: string) =>
  (await db.pool.query<{ n: number }>('select count(*)::int as n from tally.events where account_id = $1', [account])).rows[0]!.n;

describe('tally import on a slow stdin', () => {
  it('commits what waited for input, and a Ctrl-C counts skipped and unstored lines exactly', async () => {
    const account = await createAccount('Slow pipe');
    const line = (i: number) => JSON.stringify({ account_id: account, event_type: 'slow', idempotency_key: `slow-${i}` }) + '\n';
    const child = spawn(process.execPath, [TALLY_BIN, 'import', '-', '--format', 'ndjson', '--json', '--no-progress', '--commit-interval', '1500'], {
      env: cleanEnv({ DATABASE_URL: db.url }),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      // two rows and one blank line, then the pipe stays open and quiet: they are
      // committed by time, long before 10,000 rows or the end of the input
      child.stdin.write(line(1) + '\n' + line(2));
      await vi.waitFor(async () => expect(await countOf(account)).toBe(2), { timeout: 30_000, interval: 50 });

      // three more lines reach the staging COPY (its bytes seen in pg_stat_progress_copy:
      // PostgreSQL 17 counts the tuples only later, 15 at once), then Ctrl-C before the
      // 1.5 s of waiting that would commit them
      const more = line(3) + line(4) + '\n';
      child.stdin.write(more);
      await vi.waitFor(
        async () => {
          const { rows } = await db.pool.query<{ n: number }>(
            `select coalesce(max(p.bytes_processed), 0)::int as n from pg_stat_progress_copy p
               join pg_stat_activity a on a.pid = p.pid where a.application_name = 'tally-import' and a.datname = current_database()`,
          );
          expect(rows[0]!.n).toBe(Buffer.byteLength(more));
        },
        { timeout: 30_000, interval: 10 },
      );
      child.kill('SIGINT');
      expect(await exited).toBe(1);
    } finally {
      child.kill('SIGKILL');
    }
    const summary = JSON.parse(stdout) as ImportSummary;
    expect(summary).toMatchObject({ rows: 2, accepted: 2, duplicates: 0, conflicts: 0, rejected: 0, skipped: 1, notStored: 3, complete: false });
    expect(stderr).toContain('{"error":{"code":"import_stopped"'); // --json: the error as JSON
    expect(await countOf(account)).toBe(2);
  });

  it('the human summary says how many lines were read but not stored', async () => {
    const { formatImportSummary } = await import('../src/cli/import.ts');
    const text = formatImportSummary({
      file: '-', format: 'ndjson', source: 'import:x', rows: 2, skipped: 1, accepted: 2, duplicates: 0, conflicts: 0, rejected: 0,
      notStored: 3, withoutKey: 0, firstRejections: [], firstConflicts: [], rejectedQuery: '', bytes: 10, elapsedMs: 1000, rowsPerSecond: 2, complete: false,
    });
    expect(text).toContain('(1 blank lines skipped)');
    expect(text).toMatch(/not stored\s+3 {2}lines read but not stored/);
  });
});

describe('importFile', () => {
  it('creates the partition of the rows\' month first: history does not wait in the default partition', async () => {
    const account = await createAccount('History import');
    const old = new Date(Date.now() - 200 * DAY);
    const month = `${old.getUTCFullYear()}_${String(old.getUTCMonth() + 1).padStart(2, '0')}`;
    const before = await db.pool.query('select to_regclass($1) as part', [`tally.events_p${month}`]);
    expect(before.rows[0].part).toBeNull();
    const rows = [0, 1, 2].map((i) => JSON.stringify({ account_id: account, event_type: 'old', occurred_at: new Date(old.getTime() + i * 1000).toISOString() }));
    const summary = await importFile({ pool: db.pool, stream: Readable.from([rows.join('\n') + '\n']), format: 'ndjson', source: 'history' });
    expect(summary).toMatchObject({ rows: 3, accepted: 3, notStored: 0, skipped: 0 });
    const { rows: where } = await db.pool.query('select tableoid::regclass::text as part, count(*)::int as n from tally.events where account_id = $1 group by 1', [account]);
    expect(where).toEqual([{ part: `tally.events_p${month}`, n: 3 }]);
  });

  it('counts a key reused with another payload as a conflict, with its line', async () => {
    const account = await createAccount('Import conflicts');
    const row = (quantity: number) => JSON.stringify({ account_id: account, event_type: 'x', quantity, idempotency_key: 'same' });
    const summary = await importFile({ pool: db.pool, stream: Readable.from([[row(1), row(1), '', row(2)].join('\n') + '\n']), format: 'ndjson', source: 'conflicts' });
    expect(summary).toMatchObject({ rows: 3, accepted: 1, duplicates: 1, conflicts: 1, rejected: 0, skipped: 1 });
    expect(summary.firstConflicts).toEqual([{ line: 4, code: 'idempotency_conflict', message: expect.stringMatching(/^idempotency_key: 'same' was already used by event \d+/) }]);
    const { rows } = await db.pool.query("select item_index::int as line, code from tally.rejected_events where source = 'import:conflicts'");
    expect(rows).toEqual([{ line: 4, code: 'idempotency_conflict' }]);
  });
});
