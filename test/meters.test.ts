/**
 * Meters: tally.attach_meter turns every insert into an app's own table into events, in the
 * app's transaction, with no code change. Exercised on the upload seed's `file_uploads` and
 * an `api_requests` table: values, atomicity, dead letters, attach-time checks, re-attach,
 * detach, idempotency, an app role without any Tally privilege, a partitioned table, COPY,
 * and record_event inside a business transaction.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTransaction } from '../src/database/transaction.ts';
import { asAdmin, migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { setSetting } from './helpers/ledger.ts';
import { anon, as, createUser, service, user } from './helpers/personas.ts';

let db: TestDatabase;
// Roles are cluster-wide: a per-run name keeps parallel runs apart.
const appWriter = `app_writer_${randomBytes(4).toString('hex')}`;

const UPLOADS_MAPPING = {
  account_id: 'tenant',
  bytes: 'size_bytes',
  file_type: 'mime',
  occurred_at: 'created_at',
  provider: { value: 's3' },
};
const REQUESTS_MAPPING = {
  api_key_id: 'api_key_id',
  status_code: 'status',
  latency_ms: 'latency',
  endpoint: 'endpoint',
  idempotency_key: 'request_id',
};

beforeAll(async () => {
  db = await migratedDatabase();
  // fixed dates in 2026: events older than retention.events are refused at ingest, so keep them in it
  await setSetting(db.pool, 'retention.events', '100 years');
  // As on Supabase: tables the app creates in public are granted to service_role by default.
  await db.pool.query('alter default privileges in schema public grant all on tables to service_role');
  await db.pool.query(`
    create table public.file_uploads (
      id            bigint generated always as identity primary key,
      tenant        uuid,
      size_bytes    bigint,
      mime          text,
      created_at    timestamptz not null default now(),
      created_local timestamp,
      note          text
    );
    create table public.api_requests (
      id         bigint generated always as identity primary key,
      api_key_id uuid,
      status     int,
      latency    real,
      endpoint   text,
      request_id text
    );
    create table public.orders (
      id         bigint generated always as identity primary key,
      account_id uuid not null,
      total      numeric not null
    );
    create view public.recent_uploads as select * from public.file_uploads;
  `);
});
afterAll(async () => {
  await db?.drop();
  await asAdmin((c) => c.query(`drop role if exists ${appWriter}`));
});

async function newAccount(name = 'Acme'): Promise<string> {
  const { rows } = await as(db.pool, service, (c) => c.query('select id from tally.create_account(p_name => $1)', [name]));
  return rows[0].id;
}

async function newApiKey(accountId: string): Promise<string> {
  const { rows } = await as(db.pool, service, (c) =>
    c.query("select id from tally.create_api_key(p_account_id => $1::uuid, p_name => 'meter test')", [accountId]),
  );
  return rows[0].id;
}

function attach(table: string, eventType: string, mapping: unknown): Promise<Record<string, unknown>> {
  return as(db.pool, service, async (c) => {
    const { rows } = await c.query('select tally.attach_meter(p_table => $1::regclass, p_event_type => $2, p_mapping => $3::jsonb) as meter', [
      table,
      eventType,
      JSON.stringify(mapping),
    ]);
    return rows[0].meter;
  });
}

function detach(table: string): Promise<boolean> {
  return as(db.pool, service, async (c) => {
    const { rows } = await c.query('select tally.detach_meter(p_table => $1::regclass) as detached', [table]);
    return rows[0].detached;
  });
}

const attachUploads = () => attach('public.file_uploads', 'file.upload', UPLOADS_MAPPING);
const attachRequests = () => attach('public.api_requests', 'api.request', REQUESTS_MAPPING);

async function eventCount(accounts: string[], client: pg.Pool | pg.PoolClient = db.pool): Promise<number> {
  const { rows } = await client.query('select count(*)::int as n from tally.events where account_id = any($1::uuid[])', [accounts]);
  return rows[0].n;
}

async function lastRejectedId(): Promise<number> {
  const { rows } = await db.pool.query('select coalesce(max(id), 0)::int as id from tally.rejected_events');
  return rows[0].id;
}

async function meterTriggers(table: string): Promise<number> {
  const { rows } = await db.pool.query(
    "select count(*)::int as n from pg_trigger where tgrelid = $1::regclass and tgname = 'tally_meter' and not tgisinternal",
    [table],
  );
  return rows[0].n;
}

/** Runs fn in a transaction on one connection and rolls it back, whatever it did. */
async function inRolledBackTransaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.pool.connect();
  try {
    await client.query('begin');
    return await fn(client);
  } finally {
    await client.query('rollback').catch(() => undefined);
    client.release();
  }
}

const insertManyUploads = `
  insert into public.file_uploads (tenant, size_bytes, mime, created_at)
  select case when g % 2 = 0 then $1::uuid else $2::uuid end,
         g * 1000,
         (array['image/png', 'application/pdf', 'text/csv'])[g % 3 + 1],
         timestamptz '2026-01-01T00:00:00Z' + g * interval '1 second'
  from generate_series(1, $3::int) g`;

describe('metering an app table', () => {
  it('a 5,000-row INSERT ... SELECT becomes exactly 5,000 events, in the same transaction', async () => {
    await attachUploads();
    const [a, b] = [await newAccount('A'), await newAccount('B')];

    // Rolled back: the rows and their events disappear together, also from a savepoint.
    await inRolledBackTransaction(async (c) => {
      await c.query(insertManyUploads, [a, b, 5000]);
      expect(await eventCount([a, b], c)).toBe(5000);
      await c.query('savepoint s');
      await c.query(insertManyUploads, [a, b, 10]);
      expect(await eventCount([a, b], c)).toBe(5010);
      await c.query('rollback to savepoint s');
      expect(await eventCount([a, b], c)).toBe(5000);
    });
    expect(await eventCount([a, b])).toBe(0);
    const leftover = await db.pool.query('select count(*)::int as n from public.file_uploads where tenant = any($1::uuid[])', [[a, b]]);
    expect(leftover.rows[0].n).toBe(0);

    // Committed: one event per row, with that row's values.
    const inserted = await db.pool.query(insertManyUploads, [a, b, 5000]);
    expect(inserted.rowCount).toBe(5000);
    expect(await eventCount([a, b])).toBe(5000);
    const { rows: diff } = await db.pool.query(
      `with app as (
         select tenant as account_id, created_at as occurred_at, 'file.upload' as event_type, 's3' as provider,
                mime as file_type, size_bytes as bytes, true as success, 1::numeric as quantity
         from public.file_uploads where tenant = any($1::uuid[])),
       ledger as (
         select account_id, occurred_at, event_type, provider, file_type, bytes, success, quantity
         from tally.events where account_id = any($1::uuid[]))
       select count(*)::int as n from ((table app except all table ledger) union all (table ledger except all table app)) d`,
      [[a, b]],
    );
    expect(diff[0].n).toBe(0);
    const { rows: perTenant } = await db.pool.query(
      `select account_id, count(*)::int as n, sum(bytes)::text as bytes from tally.events
       where account_id = any($1::uuid[]) group by account_id order by count(*)`,
      [[a, b]],
    );
    // g odd -> b (2,500 rows), g even -> a (2,500 rows); sizes are g * 1000
    expect(perTenant).toEqual(
      expect.arrayContaining([
        { account_id: a, n: 2500, bytes: String(1000 * 2500 * 2501) },
        { account_id: b, n: 2500, bytes: String(1000 * 2500 * 2500) },
      ]),
    );
  });

  it('rows that cannot become events go to rejected_events; the insert and the valid rows go through', async () => {
    await attachUploads();
    const acct = await newAccount();
    const unknownAccount = '00000000-0000-4000-8000-000000000001';
    const before = await lastRejectedId();

    const inserted = await db.pool.query(
      `insert into public.file_uploads (tenant, size_bytes, mime) values
         ($1::uuid, 100, 'image/png'),
         ($1::uuid, -5, 'image/png'),
         (null, 7, 'image/png'),
         ($2::uuid, 8, 'image/png'),
         ($1::uuid, 9, 'png'),
         ($1::uuid, 200, 'Text/CSV')`,
      [acct, unknownAccount],
    );
    expect(inserted.rowCount).toBe(6);

    const { rows: events } = await db.pool.query('select bytes::int, file_type from tally.events where account_id = $1 order by bytes', [acct]);
    expect(events).toEqual([
      { bytes: 100, file_type: 'image/png' },
      { bytes: 200, file_type: 'text/csv' },
    ]);

    const { rows: rejected } = await db.pool.query(
      `select source, item_index::int, code, account_id, (payload->>'bytes')::int as bytes, payload->>'event_type' as event_type
       from tally.rejected_events where id > $1 order by item_index`,
      [before],
    );
    expect(rejected).toEqual([
      { source: 'meter:public.file_uploads', item_index: 1, code: 'out_of_range', account_id: acct, bytes: -5, event_type: 'file.upload' },
      { source: 'meter:public.file_uploads', item_index: 2, code: 'missing_tenant', account_id: null, bytes: 7, event_type: 'file.upload' },
      { source: 'meter:public.file_uploads', item_index: 3, code: 'account_not_found', account_id: null, bytes: 8, event_type: 'file.upload' },
      { source: 'meter:public.file_uploads', item_index: 4, code: 'invalid_value', account_id: acct, bytes: 9, event_type: 'file.upload' },
    ]);
  });

  it('api_requests: the key names the tenant; unknown and revoked keys and bad values are dead-lettered', async () => {
    await attachRequests();
    const acct = await newAccount();
    const key = await newApiKey(acct);
    const revoked = await newApiKey(acct);
    await as(db.pool, service, (c) => c.query('select tally.revoke_api_key(p_id => $1::uuid)', [revoked]));
    const before = await lastRejectedId();

    const inserted = await db.pool.query(
      `insert into public.api_requests (api_key_id, status, latency, endpoint) values
         ($1::uuid, 200, 12.6, '/v1/upload'),
         ($1::uuid, 503, 40, '/v1/upload'),
         ('00000000-0000-4000-8000-0000000000aa', 200, 1, '/v1/upload'),
         ($2::uuid, 200, 1, '/v1/upload'),
         ($1::uuid, 0, 1, '/v1/upload'),
         ($1::uuid, 200, -1, '/v1/upload')`,
      [key, revoked],
    );
    expect(inserted.rowCount).toBe(6);

    const { rows: events } = await db.pool.query(
      `select event_type, api_key_id, status_code, success, latency_ms, endpoint from tally.events
       where account_id = $1 order by status_code`,
      [acct],
    );
    expect(events).toEqual([
      { event_type: 'api.request', api_key_id: key, status_code: 200, success: true, latency_ms: 13, endpoint: '/v1/upload' },
      { event_type: 'api.request', api_key_id: key, status_code: 503, success: false, latency_ms: 40, endpoint: '/v1/upload' },
    ]);
    const { rows: rejected } = await db.pool.query(
      'select source, item_index::int, code from tally.rejected_events where id > $1 order by item_index',
      [before],
    );
    expect(rejected).toEqual([
      { source: 'meter:public.api_requests', item_index: 2, code: 'unknown_api_key' },
      { source: 'meter:public.api_requests', item_index: 3, code: 'revoked_api_key' },
      { source: 'meter:public.api_requests', item_index: 4, code: 'out_of_range' },
      { source: 'meter:public.api_requests', item_index: 5, code: 'out_of_range' },
    ]);
  });

  it('an idempotency key mapped from a column dedupes repeated inserts, per account', async () => {
    await attachRequests();
    const acct = await newAccount();
    const other = await newAccount();
    const [key, otherKey] = [await newApiKey(acct), await newApiKey(other)];
    const insert = (rows: [string, string][]) =>
      db.pool.query(
        `insert into public.api_requests (api_key_id, status, latency, endpoint, request_id)
         select k, 200, 1, '/v1/x', r from unnest($1::uuid[], $2::text[]) as t(k, r)`,
        [rows.map((r) => r[0]), rows.map((r) => r[1])],
      );

    await insert([
      [key, 'req-1'],
      [key, 'req-2'],
      [key, 'req-2'],
    ]);
    await insert([
      [key, 'req-1'],
      [key, 'req-3'],
      [otherKey, 'req-1'],
    ]);
    const { rows } = await db.pool.query(
      'select account_id, idempotency_key from tally.events where account_id = any($1::uuid[]) order by account_id = $2, idempotency_key',
      [[acct, other], other],
    );
    expect(rows).toEqual([
      { account_id: acct, idempotency_key: 'req-1' },
      { account_id: acct, idempotency_key: 'req-2' },
      { account_id: acct, idempotency_key: 'req-3' },
      { account_id: other, idempotency_key: 'req-1' },
    ]);
    const appRows = await db.pool.query('select count(*)::int as n from public.api_requests where api_key_id = any($1::uuid[])', [[key, otherKey]]);
    expect(appRows.rows[0].n).toBe(6);
  });

  it('the role that inserts needs no privilege on tally: the trigger runs as its definer', async () => {
    await attachUploads();
    const acct = await newAccount();
    await db.pool.query(`create role ${appWriter} nologin noinherit`);
    await db.pool.query(`grant usage on schema public to ${appWriter}`);
    await db.pool.query(`grant insert on public.file_uploads to ${appWriter}`);

    const client = await db.pool.connect();
    try {
      await withTransaction(client, async () => {
        await client.query(`set local role ${appWriter}`);
        const { rows: privileges } = await client.query(
          "select has_schema_privilege('tally', 'USAGE') as tally_usage, has_table_privilege('public.file_uploads', 'SELECT') as can_read",
        );
        expect(privileges[0]).toEqual({ tally_usage: false, can_read: false });
        const inserted = await client.query(
          "insert into public.file_uploads (tenant, size_bytes, mime) select $1::uuid, g, 'image/png' from generate_series(1, 3) g",
          [acct],
        );
        expect(inserted.rowCount).toBe(3);
      });
    } finally {
      client.release();
    }
    expect(await eventCount([acct])).toBe(3);

    // and it still cannot call Tally itself
    const client2 = await db.pool.connect();
    try {
      await client2.query('begin');
      await client2.query(`set local role ${appWriter}`);
      await expect(client2.query("select tally.record_events('[]'::jsonb)")).rejects.toMatchObject({ code: '42501' });
    } finally {
      await client2.query('rollback').catch(() => undefined);
      client2.release();
    }
  });

  it('a partitioned app table is metered through its parent, whatever partition a row lands in', async () => {
    await db.pool.query(`
      create table public.uploads_by_month (tenant uuid, size_bytes bigint, created_at timestamptz not null)
        partition by range (created_at);
      create table public.uploads_2026_01 partition of public.uploads_by_month for values from ('2026-01-01Z') to ('2026-02-01Z');
      create table public.uploads_2026_02 partition of public.uploads_by_month for values from ('2026-02-01Z') to ('2026-03-01Z');
      create table public.uploads_other partition of public.uploads_by_month default;
    `);
    const meter = await attach('public.uploads_by_month', 'file.upload', { account_id: 'tenant', bytes: 'size_bytes', occurred_at: 'created_at' });
    expect(meter).toMatchObject({ table: 'public.uploads_by_month', event_type: 'file.upload' });
    const acct = await newAccount();

    await db.pool.query(
      `insert into public.uploads_by_month (tenant, size_bytes, created_at)
       select $1::uuid, g, timestamptz '2026-01-20T00:00:00Z' + g * interval '1 day' from generate_series(1, 60) g`,
      [acct],
    );
    const { rows } = await db.pool.query(
      `select count(*)::int as n, sum(bytes)::int as bytes,
              count(*) filter (where occurred_at >= '2026-03-01Z')::int as past_february
       from tally.events where account_id = $1`,
      [acct],
    );
    expect(rows[0]).toEqual({ n: 60, bytes: (60 * 61) / 2, past_february: 21 });
  });

  it('COPY into a metered table is metered too', async () => {
    await attachUploads();
    const acct = await newAccount();
    const client = await db.pool.connect();
    try {
      const lines = Array.from({ length: 50 }, (_, i) => `${acct}\t${i + 1}\timage/webp\n`);
      await pipeline(Readable.from(lines), client.query(copyFrom('copy public.file_uploads (tenant, size_bytes, mime) from stdin')));
    } finally {
      client.release();
    }
    const { rows } = await db.pool.query("select count(*)::int as n, sum(bytes)::int as bytes from tally.events where account_id = $1 and file_type = 'image/webp'", [
      acct,
    ]);
    expect(rows[0]).toEqual({ n: 50, bytes: (50 * 51) / 2 });
  });
});

describe('attaching and detaching', () => {
  it('returns the meter and records it in tally.meters', async () => {
    const meter = await attachUploads();
    expect(meter).toEqual({ table: 'public.file_uploads', event_type: 'file.upload', mapping: UPLOADS_MAPPING });
    const { rows } = await db.pool.query("select table_name, event_type, mapping from tally.meters where table_id = 'public.file_uploads'::regclass");
    expect(rows).toEqual([{ table_name: 'public.file_uploads', event_type: 'file.upload', mapping: UPLOADS_MAPPING }]);
    expect(await meterTriggers('public.file_uploads')).toBe(1);
  });

  it.each([
    ['a missing column', { account_id: 'tenant', bytes: 'size' }, 'invalid_mapping', /size/],
    ['a column that is SQL', { account_id: 'tenant', bytes: 'size_bytes) from pg_authid --' }, 'invalid_mapping', /size_bytes\)/],
    ['a text column for a count', { account_id: 'tenant', bytes: 'mime' }, 'invalid_mapping', /mime.*bytes/],
    ['a timestamp without time zone', { account_id: 'tenant', occurred_at: 'created_local' }, 'invalid_mapping', /created_local/],
    ['a bigint tenant', { account_id: 'size_bytes' }, 'invalid_mapping', /size_bytes/],
    ['an unknown field', { account_id: 'tenant', size: 'size_bytes' }, 'invalid_mapping', /mapping\.size/],
    ['a typo in a field', { account_id: 'tenant', token_in: 'size_bytes' }, 'invalid_mapping', /token_in/],
    ['a constant of the wrong type', { account_id: 'tenant', provider: { value: 5 } }, 'invalid_mapping', /provider/],
    ['a constant out of range', { account_id: 'tenant', status_code: { value: 999 } }, 'invalid_mapping', /status_code/],
    ['a constant that is not a MIME type', { account_id: 'tenant', file_type: { value: 'png' } }, 'invalid_mapping', /file_type/],
    ['a constant with extra keys', { account_id: 'tenant', provider: { value: 's3', note: 'x' } }, 'invalid_mapping', /provider/],
    ['a number instead of a column name', { account_id: 'tenant', bytes: 5 }, 'invalid_mapping', /bytes/],
    ['no tenant', { bytes: 'size_bytes' }, 'invalid_mapping', /account_id or api_key_id/],
    ['event_type in the mapping', { account_id: 'tenant', event_type: 'mime' }, 'invalid_mapping', /event_type/],
    ['a mapping that is not an object', ['tenant'], 'invalid_mapping', /mapping/],
  ])('refuses %s at attach time (22023)', async (_what, mapping, hint, message) => {
    await expect(attach('public.file_uploads', 'file.upload', mapping)).rejects.toMatchObject({
      code: '22023',
      hint,
      message: expect.stringMatching(message),
    });
  });

  it.each([
    ['a view', 'public.recent_uploads', 'file.upload'],
    ['a tally table', 'tally.events', 'file.upload'],
    ['another tally table', 'tally.accounts', 'file.upload'],
    ['an event type that is not a slug', 'public.file_uploads', 'file upload'],
  ])('refuses %s (22023 invalid_parameter)', async (_what, table, eventType) => {
    await expect(attach(table, eventType, UPLOADS_MAPPING)).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
  });

  it('a refused attach leaves nothing behind, and a refused re-attach keeps the meter in place', async () => {
    await db.pool.query('create table public.never_metered (tenant uuid, size_bytes bigint)');
    await expect(attach('public.never_metered', 'x', { account_id: 'tenant', bytes: 'nope' })).rejects.toMatchObject({ code: '22023' });
    expect(await meterTriggers('public.never_metered')).toBe(0);
    const { rows } = await db.pool.query("select count(*)::int as n from tally.meters where table_id = 'public.never_metered'::regclass");
    expect(rows[0].n).toBe(0);

    await attachUploads();
    await expect(attach('public.file_uploads', 'file.other', { account_id: 'tenant', bytes: 'nope' })).rejects.toMatchObject({ code: '22023' });
    const acct = await newAccount();
    await db.pool.query("insert into public.file_uploads (tenant, size_bytes, mime) values ($1, 1, 'image/png')", [acct]);
    const { rows: events } = await db.pool.query('select event_type, provider from tally.events where account_id = $1', [acct]);
    expect(events).toEqual([{ event_type: 'file.upload', provider: 's3' }]);
  });

  it('only service callers attach or detach (42501)', async () => {
    const someone = await createUser(db.pool);
    const call = "select tally.attach_meter('public.file_uploads'::regclass, 'file.upload', '{\"account_id\": \"tenant\"}'::jsonb)";
    await expect(as(db.pool, user(someone), (c) => c.query(call))).rejects.toMatchObject({ code: '42501' });
    await expect(as(db.pool, anon, (c) => c.query(call))).rejects.toMatchObject({ code: '42501' });
    await expect(as(db.pool, user(someone), (c) => c.query("select tally.detach_meter('public.file_uploads'::regclass)"))).rejects.toMatchObject({
      code: '42501',
    });
  });

  it('attaching again replaces the mapping and keeps one trigger', async () => {
    await attachUploads();
    await attach('public.file_uploads', 'file.stored', { account_id: 'tenant', bytes: 'size_bytes', provider: { value: 'gcs' } });
    expect(await meterTriggers('public.file_uploads')).toBe(1);
    const { rows: meters } = await db.pool.query("select event_type, mapping from tally.meters where table_name = 'public.file_uploads'");
    expect(meters).toEqual([{ event_type: 'file.stored', mapping: { account_id: 'tenant', bytes: 'size_bytes', provider: { value: 'gcs' } } }]);

    const acct = await newAccount();
    await db.pool.query("insert into public.file_uploads (tenant, size_bytes, mime) values ($1, 42, 'image/png')", [acct]);
    const { rows } = await db.pool.query('select event_type, provider, bytes::int, file_type from tally.events where account_id = $1', [acct]);
    expect(rows).toEqual([{ event_type: 'file.stored', provider: 'gcs', bytes: 42, file_type: null }]);
  });

  it('detach stops metering: true the first time, false after', async () => {
    await attachUploads();
    expect(await detach('public.file_uploads')).toBe(true);
    expect(await meterTriggers('public.file_uploads')).toBe(0);
    const { rows } = await db.pool.query("select count(*)::int as n from tally.meters where table_name = 'public.file_uploads'");
    expect(rows[0].n).toBe(0);

    const acct = await newAccount();
    const inserted = await db.pool.query("insert into public.file_uploads (tenant, size_bytes, mime) values ($1, 1, 'image/png')", [acct]);
    expect(inserted.rowCount).toBe(1);
    expect(await eventCount([acct])).toBe(0);
    expect(await detach('public.file_uploads')).toBe(false);
  });
});

describe('meters under change and at scale', () => {
  it('a statement larger than ingest.max_batch is ingested in chunks, with indexes counted across chunks', async () => {
    const account = await newAccount('Chunks');
    await db.pool.query('create table public.chunked (tenant uuid, size bigint)');
    await attach('public.chunked', 'chunk.test', { account_id: 'tenant', bytes: 'size' });
    await as(db.pool, service, (c) => c.query("select tally.set_setting('ingest.max_batch', '100')"));
    const before = await lastRejectedId();
    try {
      // 250 rows, three chunks; row 180 (index 179) is invalid
      await db.pool.query('insert into public.chunked select $1::uuid, case when g = 180 then -1 else g end from generate_series(1, 250) g', [account]);
    } finally {
      await as(db.pool, service, (c) => c.query("select tally.set_setting('ingest.max_batch', null)"));
    }
    expect(await eventCount([account])).toBe(249);
    const { rows } = await db.pool.query('select item_index::int, code from tally.rejected_events where id > $1', [before]);
    expect(rows).toEqual([{ item_index: 179, code: 'out_of_range' }]);
  });

  it('a mapped column renamed after attach dead-letters whole rows instead of failing the insert', async () => {
    const account = await newAccount('Renamed');
    await db.pool.query('create table public.renamed (tenant uuid, sz bigint)');
    await attach('public.renamed', 'rename.test', { account_id: 'tenant', bytes: 'sz' });
    await db.pool.query('alter table public.renamed rename column sz to size_bytes');
    const before = await lastRejectedId();
    await db.pool.query('insert into public.renamed values ($1, 7), ($1, 8)', [account]);
    expect(await eventCount([account])).toBe(0);
    const { rows } = await db.pool.query('select code, message, payload from tally.rejected_events where id > $1 order by item_index', [before]);
    expect(rows.map((r) => r.code)).toEqual(['meter_mapping_broken', 'meter_mapping_broken']);
    expect(rows[0].message).toMatch(/sz/);
    expect(rows.map((r) => r.payload)).toEqual([
      { tenant: account, size_bytes: 7 },
      { tenant: account, size_bytes: 8 },
    ]);
    // attaching again with the new name restores metering
    await attach('public.renamed', 'rename.test', { account_id: 'tenant', bytes: 'size_bytes' });
    await db.pool.query('insert into public.renamed values ($1, 9)', [account]);
    expect(await eventCount([account])).toBe(1);
  });

  it('the caller must be allowed to read the mapped columns and to add triggers (42501)', async () => {
    await db.pool.query('create table public.secrets (tenant uuid, token text, size bigint)');
    await db.pool.query('revoke all on public.secrets from service_role');
    await db.pool.query('grant select (tenant, size) on public.secrets to service_role');
    await expect(attach('public.secrets', 'leak', { account_id: 'tenant', bytes: 'size' })).rejects.toMatchObject({ code: '42501', hint: 'forbidden' });
    await db.pool.query('grant trigger on public.secrets to service_role');
    await expect(attach('public.secrets', 'leak', { account_id: 'tenant', endpoint: 'token' })).rejects.toMatchObject({
      code: '42501',
      hint: 'forbidden',
      message: expect.stringMatching(/token/),
    });
    await expect(attach('public.secrets', 'ok', { account_id: 'tenant', bytes: 'size' })).resolves.toMatchObject({ event_type: 'ok' });
  });

  it('a constant tenant must be a UUID of an existing account', async () => {
    await expect(attach('public.file_uploads', 'x', { account_id: { value: 'not-a-uuid' } })).rejects.toMatchObject({ code: '22023', hint: 'invalid_mapping' });
    await expect(attach('public.file_uploads', 'x', { account_id: { value: '00000000-0000-0000-0000-000000000000' } })).rejects.toMatchObject({
      code: '22023',
      hint: 'invalid_mapping',
      message: expect.stringMatching(/account_not_found/),
    });
  });

  it("an app's own trigger named tally_meter is neither replaced nor dropped", async () => {
    await db.pool.query(`
      create table public.own_trigger (tenant uuid);
      create function public.noop() returns trigger language plpgsql as $$ begin return null; end $$;
      create trigger tally_meter after insert on public.own_trigger for each statement execute function public.noop();`);
    await expect(attach('public.own_trigger', 'x', { account_id: 'tenant' })).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
    expect(await detach('public.own_trigger')).toBe(false);
    expect(await meterTriggers('public.own_trigger')).toBe(1);
  });
});

describe('record_event inside the app transaction', () => {
  const order = (accountId: string, key: string) => ({ account_id: accountId, event_type: 'order.placed', quantity: '2', idempotency_key: key });

  it('a rolled-back business transaction stores neither the order nor its event', async () => {
    const acct = await newAccount();
    await inRolledBackTransaction(async (c) => {
      await c.query('insert into public.orders (account_id, total) values ($1, 19.90)', [acct]);
      const { rows } = await c.query('select * from tally.record_event(p_event => $1::jsonb)', [JSON.stringify(order(acct, 'order-1'))]);
      expect(rows[0].duplicate).toBe(false);
      expect(await eventCount([acct], c)).toBe(1);
    });
    expect(await eventCount([acct])).toBe(0);
    const { rows: keys } = await db.pool.query('select count(*)::int as n from tally.idempotency_keys where account_id = $1', [acct]);
    expect(keys[0].n).toBe(0);
  });

  it('a committed one stores both; the same key again returns the original id', async () => {
    const acct = await newAccount();
    const client = await db.pool.connect();
    let eventId: string;
    try {
      eventId = await withTransaction(client, async () => {
        await client.query('insert into public.orders (account_id, total) values ($1, 19.90)', [acct]);
        const { rows } = await client.query('select * from tally.record_event(p_event => $1::jsonb)', [JSON.stringify(order(acct, 'order-2'))]);
        expect(rows[0].duplicate).toBe(false);
        return rows[0].event_id as string;
      });
    } finally {
      client.release();
    }
    const { rows: stored } = await db.pool.query('select id::text, event_type, quantity::text from tally.events where account_id = $1', [acct]);
    expect(stored).toEqual([{ id: String(eventId), event_type: 'order.placed', quantity: '2.000000000000' }]);

    const again = await as(db.pool, service, (c) => c.query('select * from tally.record_event(p_event => $1::jsonb)', [JSON.stringify(order(acct, 'order-2'))]));
    expect(again.rows).toEqual([{ event_id: eventId, duplicate: true, conflict: false }]);
    expect(await eventCount([acct])).toBe(1);
  });
});
