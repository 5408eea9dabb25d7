/**
 * Validation of ingested events: every malformed item is refused with its stable code and
 * a message naming the field, kept as sent in tally.rejected_events, and never takes its
 * valid siblings down with it. Also the batch-level checks, the settings that bound them,
 * and how accepted values are normalised (success, truncation, rounding, money).
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import {
  createAccount,
  createApiKey,
  DAY,
  HOUR,
  importEvents,
  isoFromNow,
  lastRejectedId,
  MINUTE,
  recordEvent,
  recordEvents,
  setSetting,
} from './helpers/ledger.ts';
import { as, createUser, service, user } from './helpers/personas.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
  // these tests use dates from long ago; events older than retention.events are refused at ingest
  await setSetting(db.pool, 'retention.events', '100 years');
});
afterAll(async () => {
  await db?.drop();
});

/** SQLSTATE record_event raises for each item code. */
const sqlstateOf = (code: string): string =>
  ['unknown_api_key', 'revoked_api_key', 'expired_api_key'].includes(code) ? '28000' : code === 'account_not_found' ? 'P0002' : '22023';

/** What the bad items are made of: two accounts, a live, a revoked and an expired key of the first, and valid items of it. */
interface Fixtures {
  a: string;
  b: string;
  key: { id: string };
  revoked: { id: string };
  expired: { id: string };
  ok(extra?: Record<string, unknown>): Record<string, unknown>;
  field(name: string, value: unknown): Record<string, unknown>;
}

interface BadCase {
  label: string;
  item: (x: Fixtures) => unknown;
  code: string;
  /** The field the message must name. */
  field: RegExp;
  /** The account the dead letter is filed under ('a': the first account, null: none); undefined: not checked. */
  account?: 'a' | null;
}

/** A bad case made concrete for one database: its item and dead-letter account. */
interface Resolved extends Omit<BadCase, 'item' | 'account'> {
  item: unknown;
  account?: string | null;
}

/** The stored row of an event, read as a superuser. */
async function storedEvent(where: string, values: unknown[]) {
  const { rows } = await db.pool.query(`select * from tally.events where ${where}`, values);
  expect(rows).toHaveLength(1);
  return rows[0];
}

const CASES: BadCase[] = [
  // not an event at all
  { label: 'a number', item: () => 42, code: 'invalid_event', field: /item/, account: null },
  { label: 'a string', item: () => 'api.call', code: 'invalid_event', field: /item/, account: null },
  { label: 'null', item: () => null, code: 'invalid_event', field: /item/, account: null },
  { label: 'an array holding an event', item: (x) => [x.ok()], code: 'invalid_event', field: /item/, account: null },
  { label: 'nested garbage', item: () => [[[[{ '': [null] }]]]], code: 'invalid_event', field: /item/, account: null },
  { label: 'a typo in a field name', item: (x) => x.field('token_in', 5), code: 'unknown_field', field: /token_in/, account: 'a' },
  { label: 'a SQL-looking field name', item: (x) => x.field("x'); drop table tally.events; --", 1), code: 'unknown_field', field: /drop table tally\.events/ },
  // tenant
  { label: 'no tenant', item: () => ({ event_type: 'api.call' }), code: 'missing_tenant', field: /account_id/, account: null },
  { label: 'null tenant', item: () => ({ account_id: null, api_key_id: null, event_type: 'x' }), code: 'missing_tenant', field: /account_id/, account: null },
  { label: 'account_id a number', item: (x) => x.field('account_id', 123), code: 'invalid_type', field: /account_id/, account: null },
  { label: 'account_id SQL', item: (x) => x.field('account_id', "' or 1=1 --"), code: 'invalid_value', field: /account_id/, account: null },
  { label: 'api_key_id a boolean', item: (x) => x.field('api_key_id', true), code: 'invalid_type', field: /api_key_id/, account: 'a' },
  { label: 'api_key_id not a uuid', item: (x) => x.field('api_key_id', 'tk_live_secret'), code: 'invalid_value', field: /api_key_id/, account: 'a' },
  { label: 'cost rounding up to 10^12', item: (x) => x.field('cost_usd', '999999999999.9999999999999'), code: 'out_of_range', field: /cost_usd/, account: 'a' },
  { label: 'quantity rounding up to 10^12', item: (x) => x.field('quantity', '999999999999.99999999999995'), code: 'out_of_range', field: /quantity/, account: 'a' },
  { label: 'unknown account', item: () => ({ account_id: randomUUID(), event_type: 'x' }), code: 'account_not_found', field: /account_id/, account: null },
  { label: 'unknown key', item: () => ({ api_key_id: randomUUID(), event_type: 'x' }), code: 'unknown_api_key', field: /api_key_id/, account: null },
  { label: 'revoked key', item: (x) => ({ api_key_id: x.revoked.id, event_type: 'x' }), code: 'revoked_api_key', field: /api_key_id/, account: 'a' },
  { label: 'expired key', item: (x) => ({ api_key_id: x.expired.id, event_type: 'x' }), code: 'expired_api_key', field: /api_key_id/, account: 'a' },
  { label: 'key of another account', item: (x) => ({ account_id: x.b, api_key_id: x.key.id, event_type: 'x' }), code: 'account_mismatch', field: /api_key_id/ },
  // time
  { label: 'occurred_at epoch seconds', item: (x) => x.field('occurred_at', 1_700_000_000), code: 'invalid_type', field: /occurred_at/, account: 'a' },
  { label: 'occurred_at February 30', item: (x) => x.field('occurred_at', '2026-02-30T00:00:00Z'), code: 'invalid_value', field: /occurred_at/ },
  { label: 'occurred_at without offset', item: (x) => x.field('occurred_at', '2026-01-01T10:00:00'), code: 'invalid_value', field: /occurred_at/ },
  { label: 'occurred_at before 1970', item: (x) => x.field('occurred_at', '1969-12-31T23:59:59Z'), code: 'invalid_value', field: /occurred_at/ },
  { label: 'occurred_at free text', item: (x) => x.field('occurred_at', 'yesterday'), code: 'invalid_value', field: /occurred_at/ },
  { label: 'occurred_at tomorrow', item: (x) => x.field('occurred_at', isoFromNow(DAY)), code: 'future_timestamp', field: /occurred_at/, account: 'a' },
  // kind
  { label: 'no event_type', item: (x) => ({ account_id: x.a }), code: 'missing_field', field: /event_type/, account: 'a' },
  { label: 'event_type a number', item: (x) => x.field('event_type', 7), code: 'invalid_type', field: /event_type/ },
  { label: 'event_type too long', item: (x) => x.field('event_type', 'e'.repeat(65)), code: 'too_long', field: /event_type/ },
  { label: 'event_type SQL', item: (x) => x.field('event_type', "x'); drop table tally.events; --"), code: 'invalid_value', field: /event_type/ },
  { label: 'event_type empty', item: (x) => x.field('event_type', ''), code: 'invalid_value', field: /event_type/ },
  // descriptive strings
  { label: 'provider too long', item: (x) => x.field('provider', 'p'.repeat(201)), code: 'too_long', field: /provider/ },
  { label: 'provider empty', item: (x) => x.field('provider', ''), code: 'invalid_value', field: /provider/ },
  { label: 'model an operator object', item: (x) => x.field('model', { $gt: '' }), code: 'invalid_type', field: /model/ },
  { label: 'endpoint too long', item: (x) => x.field('endpoint', '/'.repeat(2001)), code: 'too_long', field: /endpoint/ },
  { label: 'method with a path', item: (x) => x.field('method', 'GET /x'), code: 'invalid_value', field: /method/ },
  // outcome
  { label: 'status_code 99', item: (x) => x.field('status_code', 99), code: 'out_of_range', field: /status_code/ },
  { label: 'status_code "600"', item: (x) => x.field('status_code', '600'), code: 'out_of_range', field: /status_code/ },
  { label: 'status_code fractional', item: (x) => x.field('status_code', 200.5), code: 'out_of_range', field: /status_code/ },
  { label: 'status_code text', item: (x) => x.field('status_code', '200 OK'), code: 'invalid_type', field: /status_code/ },
  { label: 'success a string', item: (x) => x.field('success', 'true'), code: 'invalid_type', field: /success/ },
  { label: 'error_message an object', item: (x) => x.field('error_message', { message: 'x' }), code: 'invalid_type', field: /error_message/ },
  { label: 'file_type without a slash', item: (x) => x.field('file_type', 'png'), code: 'invalid_value', field: /file_type/ },
  { label: 'file_type too long', item: (x) => x.field('file_type', `image/${'x'.repeat(250)}`), code: 'too_long', field: /file_type/ },
  // counts
  { label: 'files negative', item: (x) => x.field('files', -1), code: 'out_of_range', field: /files/ },
  { label: 'bytes fractional', item: (x) => x.field('bytes', 1.5), code: 'out_of_range', field: /bytes/ },
  { label: 'tokens_in text', item: (x) => x.field('tokens_in', '12abc'), code: 'invalid_type', field: /tokens_in/ },
  { label: 'tokens_in "NaN"', item: (x) => x.field('tokens_in', 'NaN'), code: 'invalid_type', field: /tokens_in/ },
  { label: 'tokens_in after an ideographic space', item: (x) => x.field('tokens_in', '\u30005'), code: 'invalid_type', field: /tokens_in/ },
  { label: 'cost_usd before a thin space', item: (x) => x.field('cost_usd', '1\u2009'), code: 'invalid_type', field: /cost_usd/ },
  { label: 'occurred_at with an Arabic-Indic digit', item: (x) => x.field('occurred_at', '2026-01-01T10:00:0\u0661Z'), code: 'invalid_value', field: /occurred_at/ },
  { label: 'tokens_in an operator object', item: (x) => x.field('tokens_in', { $gt: 0 }), code: 'invalid_type', field: /tokens_in/ },
  { label: 'tokens_out "Infinity"', item: (x) => x.field('tokens_out', 'Infinity'), code: 'invalid_type', field: /tokens_out/ },
  { label: 'tokens_out beyond bigint', item: (x) => x.field('tokens_out', 1e19), code: 'out_of_range', field: /tokens_out/ },
  { label: 'cached a number', item: (x) => x.field('cached', 1), code: 'invalid_type', field: /cached/ },
  // money and quantities
  { label: 'cost_usd negative', item: (x) => x.field('cost_usd', -0.01), code: 'out_of_range', field: /cost_usd/ },
  { label: 'cost_usd "-Infinity"', item: (x) => x.field('cost_usd', '-Infinity'), code: 'invalid_type', field: /cost_usd/ },
  { label: 'cost_usd exponent string', item: (x) => x.field('cost_usd', '1e-12'), code: 'invalid_type', field: /cost_usd/ },
  { label: 'potential_cost_usd 1e12', item: (x) => x.field('potential_cost_usd', 1e12), code: 'out_of_range', field: /potential_cost_usd/ },
  { label: 'latency_ms negative', item: (x) => x.field('latency_ms', -5), code: 'out_of_range', field: /latency_ms/ },
  { label: 'latency_ms an array', item: (x) => x.field('latency_ms', [1]), code: 'invalid_type', field: /latency_ms/ },
  { label: 'quantity "NaN"', item: (x) => x.field('quantity', 'NaN'), code: 'invalid_type', field: /quantity/ },
  { label: 'quantity "-1"', item: (x) => x.field('quantity', '-1'), code: 'out_of_range', field: /quantity/ },
  // identity and extras
  { label: 'idempotency_key empty', item: (x) => x.field('idempotency_key', ''), code: 'invalid_value', field: /idempotency_key/ },
  { label: 'idempotency_key too long', item: (x) => x.field('idempotency_key', 'k'.repeat(256)), code: 'too_long', field: /idempotency_key/ },
  { label: 'idempotency_key a number', item: (x) => x.field('idempotency_key', 5), code: 'invalid_type', field: /idempotency_key/ },
  { label: 'properties an array', item: (x) => x.field('properties', [1]), code: 'invalid_type', field: /properties/ },
  { label: 'properties JSON in a string', item: (x) => x.field('properties', '{}'), code: 'invalid_type', field: /properties/ },
  { label: 'properties too large', item: (x) => x.field('properties', { blob: 'x'.repeat(9000) }), code: 'too_large', field: /properties/, account: 'a' },
];

describe('a batch mixing malformed items with valid siblings', () => {
  let x: Fixtures;
  let valid: unknown[];
  const sqlish = `o'brien"; drop table tally.events; --`;

  beforeAll(async () => {
    const a = await createAccount(db.pool, 'Validation A');
    const b = await createAccount(db.pool, 'Validation B');
    const key = await createApiKey(db.pool, a, 'live');
    const revoked = await createApiKey(db.pool, a, 'revoked');
    const expired = await createApiKey(db.pool, a, 'expired');
    // ISO text of the revocation with microseconds, so events can sit just before it
    const { rows } = await as(db.pool, service, (c) =>
      c.query(
        `select to_char((tally.revoke_api_key(p_id => $1::uuid) - interval '1 minute') at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as before`,
        [revoked.id],
      ),
    );
    const beforeRevocation: string = rows[0].before;
    await db.pool.query("update tally.api_keys set created_at = now() - interval '2 days', expires_at = now() - interval '1 day' where id = $1", [
      expired.id,
    ]);

    const ok = (extra: Record<string, unknown> = {}) => ({ account_id: a, event_type: 'api.call', ...extra });
    const field = (name: string, value: unknown) => ok({ [name]: value });
    x = { a, b, key, revoked, expired, ok, field };
    valid = [
      ok(),
      ok({
        provider: sqlish,
        model: "Robert'); DROP TABLE students;--",
        endpoint: "/v1/x?q=' OR 1=1 --",
        idempotency_key: "'; truncate tally.events; --",
        properties: { q: "'; delete from tally.events; --", nested: { a: [1, { b: null }], '': '' } },
      }),
      { api_key_id: key.id, event_type: 'via.key' },
      { api_key_id: revoked.id, event_type: 'before.revocation', occurred_at: beforeRevocation },
      { api_key_id: expired.id, event_type: 'before.expiry', occurred_at: isoFromNow(-36 * HOUR) },
      { account_id: a, api_key_id: key.id, event_type: 'both.agree' },
      ok({ occurred_at: isoFromNow(-MINUTE), status_code: '201', tokens_in: '12', cost_usd: '0.5', properties: null, success: null }),
    ];
  });

  it('refuses each bad item with its code and field, keeps it as sent, and stores every sibling', async () => {
    const { a, b } = x;
    expect(CASES.length).toBeGreaterThanOrEqual(30);
    const cases: Resolved[] = CASES.map((c) => ({ ...c, item: c.item(x), account: c.account === 'a' ? a : c.account }));
    // a valid sibling after every third bad item, and the rest at the end
    const batch: unknown[] = [];
    const expected: Array<Resolved & { index: number }> = [];
    const siblings = [...valid];
    cases.forEach((c, i) => {
      expected.push({ ...c, index: batch.length });
      batch.push(c.item);
      if (i % 3 === 2 && siblings.length > 0) batch.push(siblings.shift());
    });
    batch.push(...siblings);
    const before = await lastRejectedId(db.pool);

    const result = await recordEvents(db.pool, batch);

    expect(result.rejected.map(({ index, code }) => ({ index, code }))).toEqual(expected.map(({ index, code }) => ({ index, code })));
    for (const [i, r] of result.rejected.entries()) {
      expect(r.message, expected[i]?.label).toMatch(expected[i]!.field);
    }
    expect(result).toMatchObject({ accepted: valid.length, duplicates: 0 });

    const dead = await db.pool.query(
      'select item_index::int, code, message, source, payload, account_id from tally.rejected_events where id > $1 order by item_index',
      [before],
    );
    expect(dead.rows.map((r) => ({ index: r.item_index, code: r.code, message: r.message, source: r.source }))).toEqual(
      result.rejected.map((r) => ({ ...r, source: 'record_events' })),
    );
    for (const [i, row] of dead.rows.entries()) {
      const c = expected[i]!;
      expect(row.payload, c.label).toEqual(c.item);
      if (c.account !== undefined) expect(row.account_id, c.label).toBe(c.account);
    }

    // the SQL-looking strings did nothing but get stored (or refused) verbatim
    const exists = await db.pool.query("select to_regclass('tally.events') is not null as ok");
    expect(exists.rows[0].ok).toBe(true);
    const counts = await db.pool.query('select account_id, count(*)::int as n from tally.events where account_id = any($1::uuid[]) group by 1', [[a, b]]);
    expect(counts.rows).toEqual([{ account_id: a, n: valid.length }]);
    const sql = await storedEvent('idempotency_key = $1', ["'; truncate tally.events; --"]);
    expect(sql).toMatchObject({
      provider: sqlish,
      model: "Robert'); DROP TABLE students;--",
      endpoint: "/v1/x?q=' OR 1=1 --",
      properties: { q: "'; delete from tally.events; --", nested: { a: [1, { b: null }], '': '' } },
    });
    const viaKeys = await db.pool.query(
      "select event_type, account_id from tally.events where event_type in ('via.key', 'before.revocation', 'before.expiry', 'both.agree') order by 1",
    );
    expect(viaKeys.rows).toEqual(['before.expiry', 'before.revocation', 'both.agree', 'via.key'].map((t) => ({ event_type: t, account_id: a })));
  });

  const count = async () =>
    (await db.pool.query('select (select count(*) from tally.events)::int as events, (select count(*) from tally.rejected_events)::int as dead')).rows[0];

  it.each(CASES)('record_event raises $label with its SQLSTATE and code $code, and stores nothing', async (c) => {
    const before = await count();
    await expect(recordEvent(db.pool, c.item(x))).rejects.toMatchObject({
      code: sqlstateOf(c.code),
      hint: c.code,
      message: expect.stringMatching(c.field),
    });
    expect(await count()).toEqual(before);
  });

  it('record_event stores a valid event and returns its id', async () => {
    const row = await recordEvent(db.pool, { account_id: x.a, event_type: 'single', idempotency_key: 'single-1' });
    expect(row.duplicate).toBe(false);
    const stored = await storedEvent('id = $1', [row.event_id]);
    expect(stored).toMatchObject({ account_id: x.a, event_type: 'single', idempotency_key: 'single-1' });
  });
});

describe('the batch itself', () => {
  it.each([['an object', {}], ['a string', 'x'], ['JSON null', null], ['a number', 42]])('refuses %s instead of an array', async (_label, events) => {
    await expect(recordEvents(db.pool, events)).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter', message: expect.stringMatching(/events/) });
    await expect(importEvents(db.pool, events, 'x.csv')).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
  });

  it('refuses SQL NULL', async () => {
    await expect(recordEvents(db.pool, undefined)).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
  });

  it('accepts an empty array', async () => {
    expect(await recordEvents(db.pool, [])).toEqual({ accepted: 0, duplicates: 0, rejected: [] });
  });

  it('refuses a batch over ingest.max_batch whole, without storing or dead-lettering anything', async () => {
    const account = await createAccount(db.pool, 'Batch limits');
    const item = (i: number) => ({ account_id: account, event_type: 'x', quantity: i });
    const before = await lastRejectedId(db.pool);
    expect(await setSetting(db.pool, 'ingest.max_batch', '3')).toBe('3');
    try {
      await expect(recordEvents(db.pool, [1, 2, 3, 4].map(item))).rejects.toMatchObject({
        code: '22023',
        hint: 'batch_too_large',
        message: expect.stringMatching(/events/),
      });
      await expect(importEvents(db.pool, [1, 2, 3, 'bad'], 'big.jsonl')).rejects.toMatchObject({ code: '22023', hint: 'batch_too_large' });
      expect(await recordEvents(db.pool, [1, 2, 3].map(item))).toMatchObject({ accepted: 3 });
    } finally {
      expect(await setSetting(db.pool, 'ingest.max_batch', null)).toBe('10000');
    }
    const { rows } = await db.pool.query('select count(*)::int as n from tally.events where account_id = $1', [account]);
    expect(rows[0].n).toBe(3);
    expect(await lastRejectedId(db.pool)).toBe(before);
  });

  it('import_events files refusals under import:<source> with line numbers from p_first_index', async () => {
    const account = await createAccount(db.pool, 'Import');
    const before = await lastRejectedId(db.pool);
    const result = await importEvents(db.pool, [{ account_id: account, event_type: 'ok' }, { account_id: account, event_type: 'x', files: -2 }], 'usage.csv', 10);
    expect(result).toMatchObject({ accepted: 1, duplicates: 0, rejected: [{ index: 11, code: 'out_of_range' }] });
    const { rows } = await db.pool.query('select source, item_index::int, account_id from tally.rejected_events where id > $1', [before]);
    expect(rows).toEqual([{ source: 'import:usage.csv', item_index: 11, account_id: account }]);
    await expect(importEvents(db.pool, [], '')).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter', message: expect.stringMatching(/source/) });
  });
});

describe('settings', () => {
  it('refuses unknown names', async () => {
    await expect(setSetting(db.pool, 'ingest.max_batches', '5')).rejects.toMatchObject({ code: '22023', hint: 'unknown_setting' });
    await expect(setSetting(db.pool, "x'; drop table tally.settings; --", '5')).rejects.toMatchObject({ code: '22023', hint: 'unknown_setting' });
  });

  it.each([
    ['ingest.max_batch', '0'],
    ['ingest.max_batch', '100001'],
    ['ingest.max_batch', '-5'],
    ['ingest.max_batch', 'ten'],
    ['ingest.max_batch', '1.5'],
    ['ingest.max_future_skew', '2 days'],
    ['ingest.max_future_skew', '-1 minute'],
    ['ingest.max_future_skew', 'soon'],
    ['ingest.idempotency_retention', '30 minutes'],
    ['ingest.properties_max_bytes', '255'],
  ])('refuses %s = %j (wrong kind or out of bounds) and keeps the value', async (name, value) => {
    const { rows: before } = await db.pool.query('select value from tally.settings where name = $1', [name]);
    await expect(setSetting(db.pool, name, value)).rejects.toMatchObject({
      code: '22023',
      hint: 'invalid_parameter',
      message: expect.stringMatching(/value/),
    });
    const { rows } = await db.pool.query('select value from tally.settings where name = $1', [name]);
    expect(rows).toEqual(before);
  });

  it('normalises what it stores, and NULL restores the default', async () => {
    expect(await setSetting(db.pool, 'partitions.months_ahead', ' 05 ')).toBe('5');
    expect(await setSetting(db.pool, 'ingest.max_future_skew', ' 10 minutes ')).toBe('10 minutes');
    expect(await setSetting(db.pool, 'partitions.months_ahead', null)).toBe('3');
    expect(await setSetting(db.pool, 'ingest.max_future_skew', null)).toBe('5 minutes');
  });

  it('only services set or read settings', async () => {
    const alice = await createUser(db.pool);
    await expect(as(db.pool, user(alice), (c) => c.query("select tally.set_setting('ingest.max_batch', '5')"))).rejects.toMatchObject({ code: '42501' });
    await expect(as(db.pool, user(alice), (c) => c.query('select * from tally.settings'))).rejects.toMatchObject({ code: '42501' });
    const { rows } = await as(db.pool, service, (c) => c.query('select name from tally.settings order by name'));
    expect(rows.map((r) => r.name)).toContain('ingest.max_batch');
  });
});

describe('accepted values', () => {
  let account: string;
  beforeAll(async () => {
    account = await createAccount(db.pool, 'Values');
  });
  /** Records one event (keyed so it can be read back) and returns its stored row. */
  async function roundTrip(fields: Record<string, unknown>) {
    const key = randomUUID();
    const result = await recordEvents(db.pool, [{ account_id: account, event_type: 'v', idempotency_key: key, ...fields }]);
    expect(result).toEqual({ accepted: 1, duplicates: 0, rejected: [] });
    return storedEvent('account_id = $1 and idempotency_key = $2', [account, key]);
  }

  it.each([
    [{}, true],
    [{ status_code: 200 }, true],
    [{ status_code: 399 }, true],
    [{ status_code: 404 }, false],
    [{ status_code: 503 }, false],
    [{ status_code: '503' }, false],
    [{ error_message: 'timeout' }, false],
    [{ status_code: 200, error_message: 'warning only' }, true],
    [{ status_code: 503, success: true }, true],
    [{ success: false }, false],
    [{ success: null, status_code: 500 }, false],
  ])('success of %j is %s', async (fields, success) => {
    expect((await roundTrip(fields)).success).toBe(success);
  });

  it('truncates error_message to ingest.error_message_max_length characters', async () => {
    expect((await roundTrip({ error_message: 'e'.repeat(5000) })).error_message).toBe('e'.repeat(2000));
    await setSetting(db.pool, 'ingest.error_message_max_length', '100');
    try {
      expect((await roundTrip({ error_message: 'é'.repeat(150) })).error_message).toBe('é'.repeat(100));
      expect((await roundTrip({ error_message: 'short' })).error_message).toBe('short');
    } finally {
      await setSetting(db.pool, 'ingest.error_message_max_length', null);
    }
  });

  it('caps properties at ingest.properties_max_bytes bytes of JSON', async () => {
    // {"k": "…"} is 9 bytes around the value
    const fits = { k: 'x'.repeat(8192 - 9) };
    const { rows } = await db.pool.query('select octet_length($1::jsonb::text)::int as n', [JSON.stringify(fits)]);
    expect(rows[0].n).toBe(8192);
    expect((await roundTrip({ properties: fits })).properties).toEqual(fits);

    const result = await recordEvents(db.pool, [
      { account_id: account, event_type: 'v', properties: { k: 'x'.repeat(8192 - 8) } },
      { account_id: account, event_type: 'v', properties: { k: 'é'.repeat(4100) } }, // 4109 characters, 8209 bytes
    ]);
    expect(result.rejected.map((r) => r.code)).toEqual(['too_large', 'too_large']);

    await setSetting(db.pool, 'ingest.properties_max_bytes', '100000');
    try {
      expect((await roundTrip({ properties: { k: 'é'.repeat(4100) } })).properties).toEqual({ k: 'é'.repeat(4100) });
    } finally {
      await setSetting(db.pool, 'ingest.properties_max_bytes', null);
    }
  });

  it('lowercases file_type, rounds latency_ms, reads digit strings', async () => {
    expect(await roundTrip({ file_type: 'Image/PNG' })).toMatchObject({ file_type: 'image/png' });
    expect(await roundTrip({ file_type: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' })).toMatchObject({
      file_type: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
    });
    expect(await roundTrip({ latency_ms: 12.4 })).toMatchObject({ latency_ms: 12 });
    expect(await roundTrip({ latency_ms: 12.5 })).toMatchObject({ latency_ms: 13 });
    expect(await roundTrip({ latency_ms: '7.6' })).toMatchObject({ latency_ms: 8 });
    expect(await roundTrip({ tokens_in: ' 42 ', tokens_out: '9223372036854775807', files: 3, bytes: '0', status_code: ' 201 ' })).toMatchObject({
      tokens_in: '42',
      tokens_out: '9223372036854775807',
      files: '3',
      bytes: '0',
      status_code: 201,
    });
    expect(await roundTrip({ method: 'post', provider: 'openai', model: 'gpt-4o', cached: true })).toMatchObject({
      method: 'POST',
      provider: 'openai',
      model: 'gpt-4o',
      cached: true,
    });
  });

  it('keeps money and quantities lossless to 12 decimals', async () => {
    expect(await roundTrip({ cost_usd: '0.000000000123' })).toMatchObject({ cost_usd: '0.000000000123', cost_given: true });
    expect(await roundTrip({ cost_usd: 1e-12 })).toMatchObject({ cost_usd: '0.000000000001' });
    expect(await roundTrip({ cost_usd: '123456789012.345678901234' })).toMatchObject({ cost_usd: '123456789012.345678901234' });
    expect(await roundTrip({ cost_usd: '0.0000000000015' })).toMatchObject({ cost_usd: '0.000000000002' });
    expect(await roundTrip({ potential_cost_usd: 0.1, cost_usd: 0.2 })).toMatchObject({ cost_usd: '0.200000000000', potential_cost_usd: '0.100000000000' });
    expect(await roundTrip({})).toMatchObject({ quantity: '1.000000000000', cost_usd: null, cost_given: false });
    expect(await roundTrip({ quantity: '2.5' })).toMatchObject({ quantity: '2.500000000000' });
    expect(await roundTrip({ quantity: 0 })).toMatchObject({ quantity: '0.000000000000' });
  });

  it('reads occurred_at with any UTC offset as the same instant, and defaults it to now', async () => {
    const row = await roundTrip({ occurred_at: '2021-01-15T10:00:00.123+05:30' });
    expect((row.occurred_at as Date).toISOString()).toBe('2021-01-15T04:30:00.123Z');
    const defaulted = await roundTrip({});
    const { rows } = await db.pool.query('select occurred_at = received_at as same from tally.events where id = $1', [defaulted.id]);
    expect(rows[0].same).toBe(true);
  });
});

describe('property: every item is accepted, a duplicate or rejected, exactly once', () => {
  it('accepted + duplicates + conflicts + rejected = batch length; rejected indexes are exactly the invalid items', async () => {
    const account = await createAccount(db.pool, 'Property');
    // each field of an item is drawn valid or invalid, so the expected verdict is known
    const validFields = fc.record(
      {
        tokens_in: fc.oneof(fc.nat(), fc.nat().map(String)),
        status_code: fc.integer({ min: 100, max: 599 }),
        cost_usd: fc.oneof(fc.constant('0.000000000123'), fc.double({ min: 0, max: 1e6, noNaN: true, noDefaultInfinity: true })),
        provider: fc.string({ minLength: 1, maxLength: 200 }),
        properties: fc
          .dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 })
          .filter((p) => JSON.stringify(p).length < 3000),
      },
      { requiredKeys: [] },
    );
    const invalidField = fc.constantFrom<[string, unknown]>(
      ['tokens_in', -1],
      ['tokens_in', 'NaN'],
      ['status_code', 600],
      ['cost_usd', 'Infinity'],
      ['provider', ''],
      ['properties', [1]],
      ['bogus', true],
      ['event_type', "'; drop table tally.events; --"],
    );
    const item = fc.record({
      fields: validFields,
      bad: fc.option(invalidField, { nil: undefined }),
      key: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
    });

    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(item, { maxLength: 40 }), async (drawn) => {
        run += 1;
        const batch = drawn.map((d) => ({
          account_id: account,
          event_type: 'prop',
          ...d.fields,
          ...(d.key === undefined ? {} : { idempotency_key: `run${run}-${d.key}` }),
          ...(d.bad === undefined ? {} : { [d.bad[0]]: d.bad[1] }),
        }));
        const result = await recordEvents(db.pool, batch);
        const invalid = drawn.flatMap((d, i) => (d.bad === undefined ? [] : [i]));
        const validKeyed = drawn.filter((d) => d.bad === undefined && d.key !== undefined);
        const distinctKeys = new Set(validKeyed.map((d) => d.key)).size;
        const validUnkeyed = drawn.filter((d) => d.bad === undefined && d.key === undefined).length;

        const conflicts = result.conflicts?.length ?? 0;
        expect(result.accepted + result.duplicates + conflicts + result.rejected.length).toBe(batch.length);
        expect(result.rejected.map((r) => r.index)).toEqual(invalid);
        expect(result.accepted).toBe(validUnkeyed + distinctKeys);
        // a later item of a key is a duplicate when its payload is the first one's, else a conflict
        expect(result.duplicates + conflicts).toBe(validKeyed.length - distinctKeys);
      }),
      { numRuns: 40 },
    );
  });
});
