/** `tally events record`: one event, a batch, stdin; the report, --json, --strict and bad input. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runCli } from './helpers/cli.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let env: NodeJS.ProcessEnv;
let account: string;
beforeAll(async () => {
  db = await migratedDatabase();
  env = cleanEnv({ DATABASE_URL: db.url });
  account = (await runCli(['accounts', 'create', 'Events Co'], env)).stdout.trim();
});
afterAll(async () => {
  await db?.drop();
});

const count = async (sql: string, params: unknown[] = []) => Number((await db.pool.query(sql, params)).rows[0].n);

describe('tally events record', () => {
  it('records one event object; the same idempotency key again is a duplicate', async () => {
    const event = JSON.stringify({ account_id: account, event_type: 'api_call', endpoint: '/v1/search', status_code: 200, idempotency_key: 'cli-1' });
    const first = await runCli(['events', 'record', event], env);
    expect(first.code).toBe(0);
    expect(first.stdout).toBe('accepted 1 · duplicates 0 · rejected 0\n');
    const again = await runCli(['events', 'record', event], env);
    expect(again.stdout).toBe('accepted 0 · duplicates 1 · rejected 0\n');
    expect(await count("select count(*) as n from tally.events where account_id = $1 and idempotency_key = 'cli-1'", [account])).toBe(1);
  });

  it('a batch: valid items are stored, refused ones are reported with their codes and kept (exit 0; --strict exits 1)', async () => {
    const batch = JSON.stringify([
      { account_id: account, event_type: 'llm_call', provider: 'openai', model: 'gpt-4o', tokens_in: 100, tokens_out: 20 },
      { account_id: account, event_type: 'api_call', status_code: 700 },
      { account_id: account, event_type: 'llm_call', token_in: 5 },
    ]);
    const text = await runCli(['events', 'record', batch], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toBe(
      'accepted 1 · duplicates 0 · rejected 2\n' +
        '  [1] out_of_range: status_code: must be an integer from 100 to 599\n' +
        '  [2] unknown_field: token_in: unknown field\n' +
        'refused items are kept in tally.rejected_events (source record_events)\n',
    );
    expect(await count("select count(*) as n from tally.rejected_events where account_id = $1 and source = 'record_events'", [account])).toBe(2);

    const strict = await runCli(['events', 'record', batch, '--strict', '--json'], env);
    expect(strict.code).toBe(1);
    expect(JSON.parse(strict.stdout)).toEqual({
      accepted: 1,
      duplicates: 0,
      conflicts: [],
      rejected: [
        { index: 1, code: 'out_of_range', message: 'status_code: must be an integer from 100 to 599' },
        { index: 2, code: 'unknown_field', message: 'token_in: unknown field' },
      ],
    });
    // with --json the error is JSON too, on stderr; the report stays the result on stdout
    expect(JSON.parse(strict.stderr)).toEqual({ error: { code: 'events_rejected', message: '2 of 3 item(s) refused' } });
  });

  it('- reads the events from stdin', async () => {
    const input = JSON.stringify([
      { account_id: account, event_type: 'file_upload', file_type: 'image/png', files: 1, bytes: 2048, idempotency_key: 'stdin-1' },
      { account_id: account, event_type: 'file_upload', file_type: 'image/png', files: 1, bytes: 4096, idempotency_key: 'stdin-2' },
    ]);
    const result = await runCli(['events', 'record', '-', '--json'], env, input);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ accepted: 2, duplicates: 0, conflicts: [], rejected: [] });
    expect(await count("select count(*) as n from tally.events where account_id = $1 and idempotency_key like 'stdin-%'", [account])).toBe(2);
  });

  it('--account fills in account_id for the items that name no tenant; a malformed one is usage (exit 2)', async () => {
    const other = (await runCli(['accounts', 'create', 'Other Co'], env)).stdout.trim();
    const batch = JSON.stringify([
      { event_type: 'api_call', idempotency_key: 'acct-1' },
      { account_id: other, event_type: 'api_call', idempotency_key: 'acct-2' },
    ]);
    const result = await runCli(['events', 'record', '--account', account, batch, '--json'], env);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ accepted: 2, duplicates: 0, conflicts: [], rejected: [] });
    const { rows } = await db.pool.query("select idempotency_key, account_id from tally.events where idempotency_key like 'acct-%' order by 1");
    expect(rows).toEqual([{ idempotency_key: 'acct-1', account_id: account }, { idempotency_key: 'acct-2', account_id: other }]);

    const bad = await runCli(['events', 'record', '--account', 'acme', '{"event_type": "api_call"}'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('error: --account: must be a UUID');
  });

  it('an unknown account is refused with account_not_found', async () => {
    const result = await runCli(['events', 'record', JSON.stringify({ account_id: '00000000-0000-4000-8000-000000000000', event_type: 'api_call' }), '--json'], env);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).rejected).toEqual([{ index: 0, code: 'account_not_found', message: expect.stringContaining('00000000-0000-4000-8000-000000000000') }]);
  });

  it.each([
    ['{bad', /^error: the events are not valid JSON \(.+\); quote the argument/],
    ['42', /^error: the events must be a JSON object \(one event\) or an array of objects, not number$/],
    ['null', /^error: the events must be a JSON object \(one event\) or an array of objects, not null$/],
    ['[]', /^error: the array is empty: nothing to record$/],
    ['  ', /^error: no events given/],
  ])('%j is bad usage: exit 2, one line, nothing stored', async (argument, message) => {
    const before = await count('select count(*) as n from tally.events');
    const result = await runCli(['events', 'record', argument], env);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr.trim()).toMatch(message);
    expect(await count('select count(*) as n from tally.events')).toBe(before);
  });

  it('a batch over ingest.max_batch fails with batch_too_large (exit 1)', async () => {
    await db.pool.query("select tally.set_setting('ingest.max_batch', '2')");
    try {
      const batch = JSON.stringify([1, 2, 3].map(() => ({ account_id: account, event_type: 'api_call' })));
      const result = await runCli(['events', 'record', batch], env);
      expect(result.code).toBe(1);
      expect(result.stderr.trim()).toMatch(/^error \[batch_too_large\]: /);
    } finally {
      await db.pool.query("select tally.set_setting('ingest.max_batch', null)");
    }
  });
});
