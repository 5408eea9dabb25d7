/**
 * `tally import` and importFile: NDJSON and CSV land the right rows, re-runs are
 * idempotent, bad lines are rejected with their line numbers and kept, and an import
 * killed halfway can simply be run again.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importFile, type ImportSummary } from '../src/ingest/import.ts';
import { TALLY_BIN, cleanEnv, runCli, type CliResult } from './helpers/cli.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually } from './helpers/wait.ts';
import { setSetting } from './helpers/ledger.ts';

let db: TestDatabase;
let dir: string;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  db = await migratedDatabase();
  // fixed dates in 2026: events older than retention.events are refused at ingest, so keep them in it
  await setSetting(db.pool, 'retention.events', '100 years');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-import-'));
  env = cleanEnv({ DATABASE_URL: db.url });
});
afterAll(async () => {
  await db?.drop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function createAccount(name: string): Promise<string> {
  const { rows } = await db.pool.query<{ id: string }>('select id from tally.create_account(p_name => $1)', [name]);
  return rows[0]!.id;
}

/** A realistic event of one of three kinds, keyed `<prefix>-<i>`. */
function event(account: string, i: number, prefix = 'k'): Record<string, unknown> {
  const base = { account_id: account, occurred_at: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(), idempotency_key: `${prefix}-${i}` };
  switch (i % 3) {
    case 0:
      return { ...base, event_type: 'api_request', endpoint: '/v1/things', method: 'GET', status_code: 200, latency_ms: 12 };
    case 1:
      return { ...base, event_type: 'file_upload', file_type: 'image/png', files: 1, bytes: 1000 + i };
    default:
      return { ...base, event_type: 'llm_call', provider: 'openai', model: 'gpt-4o', tokens_in: i, tokens_out: 2, cost_usd: '0.001', properties: { run: i } };
  }
}

function writeFile(name: string, content: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return file;
}

const ndjson = (events: unknown[]) => events.map((e) => JSON.stringify(e)).join('\n') + '\n';

function parseSummary(result: CliResult): ImportSummary {
  expect(result.stderr, result.stderr).not.toMatch(/^error/m);
  return JSON.parse(result.stdout) as ImportSummary;
}

/** Runs the CLI with `input` on its stdin. */
const runCliWithInput = (args: string[], input: string): Promise<CliResult> => runCli(args, env, input);

async function eventsOf(account: string) {
  const { rows } = await db.pool.query(
    `select idempotency_key, event_type, occurred_at, status_code, success, file_type, files, bytes, tokens_in, tokens_out,
            cost_usd::text, cached, error_message, properties
       from tally.events where account_id = $1 order by occurred_at, id`,
    [account],
  );
  return rows;
}

async function rejectedOf(source: string) {
  const { rows } = await db.pool.query(
    'select item_index::int as line, code, message, payload from tally.rejected_events where source = $1 order by item_index',
    [source],
  );
  return rows;
}

describe('tally import: NDJSON', () => {
  it('stores every event with its fields, prints a summary, and a re-run stores nothing twice', async () => {
    const account = await createAccount('ndjson');
    const events = Array.from({ length: 250 }, (_, i) => event(account, i));
    const file = writeFile('events.ndjson', ndjson(events));

    const first = await runCli(['import', file, '--chunk-size', '100'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^imported .*events\.ndjson \(ndjson\) in [\d.]+ s: 250 rows, [\d,]+ rows\/s/);
    expect(first.stdout).toMatch(/accepted\s+250\n\s+duplicates\s+0\n\s+rejected\s+0/);

    const stored = await eventsOf(account);
    expect(stored).toHaveLength(250);
    expect(stored.map((r) => r.idempotency_key)).toEqual(events.map((e) => e.idempotency_key));
    expect(stored[0]).toMatchObject({ event_type: 'api_request', status_code: 200, success: true, occurred_at: new Date('2026-01-01T00:00:00Z') });
    expect(stored[1]).toMatchObject({ event_type: 'file_upload', file_type: 'image/png', files: '1', bytes: '1001' });
    expect(stored[2]).toMatchObject({ event_type: 'llm_call', tokens_in: '2', tokens_out: '2', cost_usd: '0.001000000000', properties: { run: 2 } });

    const again = await runCli(['import', file, '--json'], env);
    expect(again.code).toBe(0);
    expect(parseSummary(again)).toMatchObject({ rows: 250, accepted: 0, duplicates: 250, rejected: 0, withoutKey: 0, complete: true });
    expect(await eventsOf(account)).toHaveLength(250);
  });

  it('rejects a line that is not JSON and an invalid event with their line numbers, keeps them, and stores their siblings', async () => {
    const account = await createAccount('bad lines');
    const lines = [
      JSON.stringify(event(account, 0)), // line 1
      '', // 2: blank, skipped but counted
      '{"account_id": "oops', // 3: not JSON
      JSON.stringify({ ...event(account, 1), status_code: 999 }), // 4: invalid event
      '   ', // 5: blank
      JSON.stringify(event(account, 2)), // 6
      '\\.', // 7: COPY's end-of-data marker must not end the import
      JSON.stringify({ ...event(account, 3), token_in: 5 }), // 8: unknown field
      JSON.stringify(event(account, 4)) + '\r', // 9: CRLF
      JSON.stringify(event(account, 5)), // 10: no newline at the end
    ];
    const file = writeFile('bad.jsonl', lines.join('\n'));

    const result = await runCli(['import', file, '--json', '--chunk-size', '4'], env);
    expect(result.code, result.stderr).toBe(0);
    const summary = parseSummary(result);
    expect(summary).toMatchObject({ format: 'ndjson', rows: 8, skipped: 2, accepted: 4, duplicates: 0, rejected: 4, complete: true });
    expect(summary.source).toMatch(/^import:bad\.jsonl@\d{8}T\d{6}Z-[0-9a-f]{4}$/);
    expect(summary.firstRejections).toEqual([
      { line: 3, code: 'invalid_event', message: 'not valid JSON (the line is kept as a JSON string in payload)' },
      { line: 4, code: 'out_of_range', message: expect.stringMatching(/^status_code: /) },
      { line: 7, code: 'invalid_event', message: expect.any(String) },
      { line: 8, code: 'unknown_field', message: 'token_in: unknown field' },
    ]);
    expect(summary.rejectedQuery).toBe(
      `select item_index as line, code, message, payload from tally.rejected_events where source = '${summary.source}' order by item_index;`,
    );

    const kept = await rejectedOf(summary.source);
    expect(kept.map((r) => [r.line, r.code])).toEqual([
      [3, 'invalid_event'],
      [4, 'out_of_range'],
      [7, 'invalid_event'],
      [8, 'unknown_field'],
    ]);
    expect(kept[0].payload).toBe('{"account_id": "oops');
    expect(kept[1].payload).toMatchObject({ status_code: 999, idempotency_key: 'k-1' });
    expect(kept[2].payload).toBe('\\.');
    expect((await db.pool.query(summary.rejectedQuery)).rows).toHaveLength(4);
    expect((await eventsOf(account)).map((r) => r.idempotency_key)).toEqual(['k-0', 'k-2', 'k-4', 'k-5']);

    const text = await runCli(['import', file, '--no-progress'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/rejected\s+4\s+kept in tally\.rejected_events, source 'import:bad\.jsonl@/);
    expect(text.stdout).toContain('line 4: out_of_range: status_code:');
    expect(text.stdout).toMatch(/all of them: select item_index as line, code, message, payload from tally\.rejected_events where source = /);
    expect(text.stdout).toMatch(/duplicates\s+4/);

    const strict = await runCli(['import', file, '--strict'], env);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toMatch(/^error \[rows_rejected\]: 4 row\(s\) rejected/m);
  });

  it('reads stdin with -, and sniffs the format without an extension', async () => {
    const account = await createAccount('stdin');
    const result = await runCliWithInput(['import', '-', '--json', '--source', "Bob's pipe"], ndjson([event(account, 0), event(account, 1), { ...event(account, 2), bytes: -1 }]));
    expect(result.code, result.stderr).toBe(0);
    const summary = parseSummary(result);
    expect(summary).toMatchObject({ file: '-', format: 'ndjson', source: "import:Bob's pipe", rows: 3, accepted: 2, rejected: 1 });
    expect(await rejectedOf("import:Bob's pipe")).toMatchObject([{ line: 3, code: 'out_of_range' }]);
    expect((await db.pool.query(summary.rejectedQuery)).rows).toMatchObject([{ line: '3', code: 'out_of_range' }]);
    expect(await eventsOf(account)).toHaveLength(2);
  });

  it('refuses a JSON array file with a hint, before loading anything', async () => {
    const account = await createAccount('array');
    const file = writeFile('array.json', JSON.stringify([event(account, 0)]));
    const result = await runCli(['import', file], env);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toMatch(/^error: .*looks like one JSON array.*jq -c '\.\[\]'$/);
    expect(await eventsOf(account)).toHaveLength(0);
  });
});

describe('tally import: CSV', () => {
  it('maps header columns to event fields: empty cells absent, booleans, properties JSON, spreadsheet row numbers', async () => {
    const account = await createAccount('csv');
    const rows = [
      '\uFEFFaccount_id,event_type,idempotency_key,occurred_at,status_code,success,cached,tokens_in,properties,error_message',
      `${account},api_request,c-1,2026-01-01T00:00:00Z,200,true,,,"{""plan"":""pro""}",`, // row 2
      '', // row 3: blank
      `${account},api_request,c-2,2026-01-01T00:00:01Z,500,f,,,,"line one\nline two"`, // row 4 (spans two lines)
      `${account},llm_call,c-3,2026-01-01T00:00:02Z,,,1,1200,,`, // row 5
      `${account},api_request,c-4,2026-01-01T00:00:03Z,200,yes,,,,`, // row 6: not a boolean
      `${account},api_request,c-5,2026-01-01T00:00:04Z,,,,,{oops,`, // row 7: properties not JSON
      ',,,,,,,,,', // row 8: every cell empty
      `${account},api_request,c-6,2026-01-01T00:00:05Z,,,,,,`, // row 9
    ];
    const file = writeFile('events.csv', rows.join('\r\n') + '\r\n');

    const result = await runCli(['import', file, '--json', '--chunk-size', '3'], env);
    expect(result.code, result.stderr).toBe(0);
    const summary = parseSummary(result);
    expect(summary).toMatchObject({ format: 'csv', rows: 6, skipped: 2, accepted: 4, rejected: 2 });
    expect(summary.firstRejections).toEqual([
      { line: 6, code: 'invalid_type', message: 'success: must be a boolean (got string)' },
      { line: 7, code: 'invalid_type', message: 'properties: must be a JSON object (got string)' },
    ]);
    expect(await rejectedOf(summary.source)).toMatchObject([
      { line: 6, payload: { success: 'yes', idempotency_key: 'c-4' } },
      { line: 7, payload: { properties: '{oops', idempotency_key: 'c-5' } },
    ]);

    const stored = await eventsOf(account);
    expect(stored.map((r) => r.idempotency_key)).toEqual(['c-1', 'c-2', 'c-3', 'c-6']);
    expect(stored[0]).toMatchObject({ status_code: 200, success: true, cached: false, properties: { plan: 'pro' }, error_message: null });
    expect(stored[1]).toMatchObject({ status_code: 500, success: false, error_message: 'line one\nline two' });
    expect(stored[2]).toMatchObject({ event_type: 'llm_call', cached: true, tokens_in: '1200', status_code: null });
    expect(stored[3]).toMatchObject({ success: true, properties: null });

    const again = parseSummary(await runCli(['import', file, '--json'], env));
    expect(again).toMatchObject({ accepted: 0, duplicates: 4, rejected: 2 });
  });

  it('an unknown column is a usage error (exit 2) naming it, and nothing is loaded', async () => {
    const account = await createAccount('bad header');
    const file = writeFile('typo.csv', `account_id,event_type,token_in\n${account},llm_call,5\n`);
    const result = await runCli(['import', file], env);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^error: CSV header: column 3 "token_in" is not an event field \(did you mean "tokens_in"\?\)/);
    expect(await eventsOf(account)).toHaveLength(0);
    const { rows } = await db.pool.query("select count(*)::int as n from tally.rejected_events where source like 'import:typo.csv%'");
    expect(rows[0].n).toBe(0);
  });

  it('a row COPY cannot read stops the import with its row number; earlier chunks are kept', async () => {
    const account = await createAccount('ragged');
    const good = (i: number) => `${account},api_request,r-${i}`;
    const file = writeFile('ragged.csv', ['account_id,event_type,idempotency_key', good(1), good(2), good(3), `${good(4)},extra`, good(5)].join('\n') + '\n');
    const result = await runCli(['import', file, '--chunk-size', '2'], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error \[invalid_import\]: CSV row 5: extra data after last expected column/m);
    expect((await eventsOf(account)).map((r) => r.idempotency_key)).toEqual(['r-1', 'r-2']);
  });
});

describe('tally import: usage', () => {
  it('--help explains formats, columns, idempotency and where rejected rows go', async () => {
    const result = await runCli(['import', '--help'], cleanEnv());
    expect(result.code).toBe(0);
    for (const phrase of ['Usage: tally import', 'NDJSON', 'CSV', 'tokens_in', 'idempotency_key', 'tally.rejected_events', "'import:<label>'", '--chunk-size', '--jobs', 'Exit codes']) {
      expect(result.stdout).toContain(phrase);
    }
  });

  it.each([
    [['import', 'missing.ndjson']],
    [['import', '-', '--format', 'xml']],
    [['import', '-', '--chunk-size', 'lots']],
    [['import', '-', '--chunk-size', '20000']],
    [['import', '-', '--jobs', '0']],
  ])('%j is a usage error', async (args) => {
    const result = await runCliWithInput(args, '');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^error: /);
  });
});

describe('importFile', () => {
  it('imports from a stream as service_role, reports progress per chunk, and stops cleanly on its signal', async () => {
    const account = await createAccount('api');
    const events = Array.from({ length: 30 }, (_, i) => event(account, i, 'api'));
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('set role service_role');
      const stop = new AbortController();
      const seen: number[] = [];
      const partial = await importFile({
        client,
        stream: Readable.from([Buffer.from(ndjson(events))]),
        format: 'ndjson',
        chunkSize: 10,
        source: 'api-test',
        signal: stop.signal,
        onProgress: (p) => {
          seen.push(p.rows);
          if (p.rows === 20) stop.abort();
        },
      });
      expect(seen).toEqual([10, 20]);
      expect(partial).toMatchObject({ file: 'stream', source: 'import:api-test', rows: 20, accepted: 20, complete: false });
      expect(await eventsOf(account)).toHaveLength(20);

      const rest = await importFile({ client, stream: Readable.from([Buffer.from(ndjson(events))]), chunkSize: 10 });
      expect(rest).toMatchObject({ format: 'ndjson', rows: 30, accepted: 10, duplicates: 20, complete: true });
      // the session is left as it was found
      const { rows } = await client.query("select to_regclass('pg_temp.tally_import_rows') as staging, to_regproc('pg_temp.tally_import_try_jsonb') as fn");
      expect(rows[0]).toEqual({ staging: null, fn: null });
    } finally {
      await client.end();
    }
    expect((await eventsOf(account)).map((r) => r.idempotency_key)).toEqual(events.map((e) => e.idempotency_key));
  });
});

describe('tally import: Ctrl-C', () => {
  it('stops at once while the input is idle, keeps the finished chunks, prints the summary and exits 1', async () => {
    const account = await createAccount('interrupted');
    const events = Array.from({ length: 3_000 }, (_, i) => event(account, i, 'int'));
    const child = spawn(process.execPath, [TALLY_BIN, 'import', '-', '--chunk-size', '500', '--format', 'ndjson'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.on('error', () => undefined);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // six whole chunks and the start of a seventh; the pipe then stays open and quiet
    child.stdin.write(ndjson(events) + JSON.stringify(event(account, 3_000, 'int')));
    await eventually(async () => expect(await eventsOf(account)).toHaveLength(3_000), { intervalMs: 100 });
    child.kill('SIGINT');
    expect(await exited).toBe(1);
    expect(stderr).toMatch(/stopping: waiting for the chunks being validated to commit/);
    expect(stderr).toMatch(/^error \[import_stopped\]: /m);
    expect(stdout).toMatch(/^stopped importing stdin \(ndjson\) in [\d.]+ s: 3,000 rows/);
    expect(stdout).toMatch(/run the same command again to import the rest/);
    expect(await eventsOf(account)).toHaveLength(3_000);
  });
});

describe('tally import: killed halfway', () => {
  it('keeps the chunks it committed; running it again stores every keyed event exactly once', async () => {
    const account = await createAccount('killed');
    const events = Array.from({ length: 12_000 }, (_, i) => event(account, i, 'kill'));
    const all = ndjson(events);
    const file = writeFile('big.ndjson', all);
    const count = async () =>
      (await db.pool.query<{ n: number }>('select count(*)::int as n from tally.events where account_id = $1', [account])).rows[0]!.n;

    // Feed the first half through stdin, so the import cannot finish before it is killed.
    const child = spawn(process.execPath, [TALLY_BIN, 'import', '-', '--chunk-size', '500', '--format', 'ndjson'], { env, stdio: ['pipe', 'ignore', 'ignore'] });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_code, signal) => resolve(signal)));
    child.stdin.on('error', () => undefined);
    const half = all.indexOf('\n', all.length / 2) + 1;
    child.stdin.write(all.slice(0, half));
    const committed = await eventually(
      async () => {
        const n = await count();
        expect(n).toBeGreaterThanOrEqual(3_000);
        return n;
      },
      { intervalMs: 100 },
    );
    child.stdin.write(all.slice(half, half + 200_000));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    // the server finishes (or rolls back) the statement the dead client left in flight
    await eventually(async () => {
      const { rows } = await db.pool.query<{ n: number }>(
        "select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name = 'tally-import'",
      );
      expect(rows[0]!.n, 'backends of the killed import').toBe(0);
    });

    const before = await count();
    expect(before).toBeGreaterThanOrEqual(committed);
    expect(before).toBeLessThan(events.length);
    expect(before % 500).toBe(0); // whole chunks only

    const rerun = await runCli(['import', file, '--json'], env);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(parseSummary(rerun)).toMatchObject({ rows: 12_000, accepted: 12_000 - before, duplicates: before, rejected: 0 });
    const { rows } = await db.pool.query(
      'select count(*)::int as n, count(distinct idempotency_key)::int as keys from tally.events where account_id = $1',
      [account],
    );
    expect(rows[0]).toEqual({ n: 12_000, keys: 12_000 });
  });
});
