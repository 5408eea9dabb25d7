/**
 * The TypeScript client against a real database: every wrapper round-trips, errors arrive
 * as typed classes with their stable code, bad input is refused before any round trip,
 * and money stays exact whatever the app did to pg's global type parsers.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTally, type Tally } from '../src/client/client.ts';
import {
  ApiKeyError, BatchTooLargeError, ConflictError, ConnectionError, DatabaseError, ForbiddenError, InvalidEventError,
  InvalidInputError, InvalidParameterError, NotFoundError, toTallyError,
} from '../src/client/errors.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { anon, as, createUser, user } from './helpers/personas.ts';

let db: TestDatabase;
let tally: Tally;
beforeAll(async () => {
  db = await migratedDatabase();
  tally = createTally({ pool: db.pool });
});
afterAll(async () => {
  await tally?.close();
  await db?.drop();
});

const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000);

describe('accounts and members', () => {
  it('create, update, members and roles round-trip in camelCase', async () => {
    const [owner, viewer, outsider] = await Promise.all([createUser(db.pool), createUser(db.pool), createUser(db.pool)]);
    const account = await tally.createAccount({ name: ' Acme ', externalId: `ext:${randomUUID()}`, timezone: 'Europe/Paris', ownerId: owner });
    expect(account).toMatchObject({ name: 'Acme', timezone: 'Europe/Paris' });
    expect(account.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(account.createdAt).toBeInstanceOf(Date);
    expect(account.externalId).toMatch(/^ext:/);

    const updated = await tally.updateAccount({ accountId: account.id, name: 'Acme Inc' });
    expect(updated).toMatchObject({ id: account.id, name: 'Acme Inc', timezone: 'Europe/Paris', externalId: account.externalId });

    const member = await tally.setAccountMember({ accountId: account.id, userId: viewer, role: 'viewer' });
    expect(member).toMatchObject({ accountId: account.id, userId: viewer, role: 'viewer' });
    expect(member.createdAt).toBeInstanceOf(Date);

    // has_role_on_account answers for the Supabase user of the connection: run it as personas
    const hasRole = (who: string, role?: 'viewer' | 'admin') =>
      as(db.pool, user(who), (c) => tally.using(c).hasRoleOnAccount({ accountId: account.id, role }));
    expect(await hasRole(owner, 'admin')).toBe(true);
    expect(await hasRole(viewer)).toBe(true);
    expect(await hasRole(viewer, 'admin')).toBe(false);
    expect(await hasRole(outsider)).toBe(false);

    expect(await tally.removeAccountMember({ accountId: account.id, userId: viewer })).toBe(true);
    expect(await tally.removeAccountMember({ accountId: account.id, userId: viewer })).toBe(false);
    // an account without an owner can be created by a service
    expect((await tally.createAccount({ name: 'Ownerless' })).externalId).toBeNull();
  });

  it('errors arrive typed, with the stable code and SQLSTATE', async () => {
    const owner = await createUser(db.pool);
    const externalId = `dup:${randomUUID()}`;
    const account = await tally.createAccount({ name: 'A', externalId, ownerId: owner });

    await expect(tally.createAccount({ name: 'B', externalId })).rejects.toSatisfy(
      (e) => e instanceof ConflictError && e.code === 'duplicate_external_id' && e.sqlstate === '23505',
    );
    await expect(tally.createAccount({ name: 'C', timezone: 'Mars/Olympus' })).rejects.toSatisfy(
      (e) => e instanceof InvalidParameterError && e.code === 'invalid_timezone' && e.field === 'timezone',
    );
    await expect(tally.createAccount({ name: 'D', ownerId: randomUUID() })).rejects.toSatisfy(
      (e) => e instanceof NotFoundError && e.code === 'user_not_found' && e.sqlstate === 'P0002',
    );
    await expect(tally.updateAccount({ accountId: randomUUID(), name: 'x' })).rejects.toSatisfy(
      (e) => e instanceof NotFoundError && e.code === 'account_not_found',
    );
    await expect(tally.setAccountMember({ accountId: account.id, userId: owner, role: 'admin' })).rejects.toSatisfy(
      (e) => e instanceof ConflictError && e.code === 'last_owner',
    );
    // a signed-in user who is not an admin
    const stranger = await createUser(db.pool);
    await expect(
      as(db.pool, user(stranger), (c) => tally.using(c).updateAccount({ accountId: account.id, name: 'mine now' })),
    ).rejects.toSatisfy((e) => e instanceof ForbiddenError && e.code === 'forbidden' && e.sqlstate === '42501');
    // anon has no EXECUTE at all: Postgres's own 42501, no Tally code in HINT, same class and code
    await expect(as(db.pool, anon, (c) => tally.using(c).createAccount({ name: 'x' }))).rejects.toSatisfy(
      (e) => e instanceof ForbiddenError && e.code === 'forbidden' && e.sqlstate === '42501' && e.hint === undefined,
    );
  });
});

describe('API keys', () => {
  it('create, verify and revoke; every refusal has its code', async () => {
    const account = await tally.createAccount({ name: 'Keys' });
    const key = await tally.createApiKey({ accountId: account.id, name: 'server', expiresAt: new Date(Date.now() + 86_400_000) });
    expect(key).toMatchObject({ accountId: account.id, name: 'server' });
    expect(key.secret.startsWith(key.prefix)).toBe(true);
    expect(key.expiresAt).toBeInstanceOf(Date);

    expect(await tally.verifyApiKey(key.secret)).toEqual({ apiKeyId: key.id, accountId: account.id });
    await expect(tally.verifyApiKey('tk_nope')).rejects.toSatisfy(
      (e) => e instanceof ApiKeyError && e.code === 'unknown_api_key' && e.sqlstate === '28000',
    );

    const revokedAt = await tally.revokeApiKey(key.id);
    expect(revokedAt).toBeInstanceOf(Date);
    expect((await tally.revokeApiKey(key.id)).getTime()).toBe(revokedAt.getTime()); // idempotent
    await expect(tally.verifyApiKey(key.secret)).rejects.toSatisfy((e) => e instanceof ApiKeyError && e.code === 'revoked_api_key');
    // naming a key by id that does not exist is "not found", not an authentication failure
    await expect(tally.revokeApiKey(randomUUID())).rejects.toSatisfy(
      (e) => e instanceof NotFoundError && e.code === 'api_key_not_found' && e.sqlstate === 'P0002',
    );
    await expect(tally.createApiKey({ accountId: account.id, name: 'old', expiresAt: hoursAgo(1) })).rejects.toSatisfy(
      (e) => e instanceof InvalidParameterError && e.code === 'invalid_parameter' && e.field === 'expires_at',
    );
  });
});

describe('events', () => {
  it('recordEvents stores valid items, refuses bad ones by index, and dedupes by key', async () => {
    const account = await tally.createAccount({ name: 'Events' });
    const key = randomUUID();
    const result = await tally.recordEvents([
      { accountId: account.id, eventType: 'api_call', statusCode: 200, latencyMs: 12.4, idempotencyKey: key },
      { accountId: account.id, eventType: 'api_call', statusCode: 700 },
      { accountId: account.id, eventType: 'api_call', idempotencyKey: key },
      { accountId: randomUUID(), eventType: 'api_call' },
      { accountId: account.id, eventType: 'api_call', statusCode: 200, latencyMs: 12.4, idempotencyKey: key },
    ]);
    const { rows: stored } = await db.pool.query('select id::text from tally.events where account_id = $1', [account.id]);
    expect(result).toEqual({
      accepted: 1,
      duplicates: 1,
      // the key again with another payload: not a duplicate, a conflict naming the kept event
      conflicts: [{ index: 2, code: 'idempotency_conflict', message: expect.stringContaining(`event ${stored[0].id}`), eventId: stored[0].id }],
      rejected: [
        { index: 1, code: 'out_of_range', message: expect.stringMatching(/^status_code:/) },
        { index: 3, code: 'account_not_found', message: expect.any(String) },
      ],
    });
    const { rows } = await db.pool.query('select latency_ms, success from tally.events where account_id = $1', [account.id]);
    expect(rows).toEqual([{ latency_ms: 12, success: true }]);
  });

  it('recordEvent returns the id as a decimal string, the same id for a duplicate, and raises typed errors', async () => {
    const account = await tally.createAccount({ name: 'One' });
    const first = await tally.recordEvent({ accountId: account.id, eventType: 'upload', bytes: 10n, idempotencyKey: 'once' });
    expect(first.eventId).toMatch(/^[0-9]+$/);
    expect(first.duplicate).toBe(false);
    expect(await tally.recordEvent({ accountId: account.id, eventType: 'upload', bytes: 10, idempotencyKey: 'once' })).toEqual({
      eventId: first.eventId,
      duplicate: true,
      conflict: false,
    });
    expect(await tally.recordEvent({ accountId: account.id, eventType: 'upload', bytes: 11, idempotencyKey: 'once' })).toEqual({
      eventId: first.eventId,
      duplicate: true,
      conflict: true,
    });

    await expect(tally.recordEvent({ accountId: account.id, eventType: 'x', tokensIn: '-1' as string })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(tally.recordEvent({ accountId: account.id, eventType: 'x', statusCode: 99 })).rejects.toSatisfy(
      (e) => e instanceof InvalidEventError && e.code === 'out_of_range' && e.field === 'status_code' && e.sqlstate === '22023',
    );
    await expect(tally.recordEvent({ accountId: account.id, eventType: 'x', occurredAt: new Date(Date.now() + 3_600_000) })).rejects.toSatisfy(
      (e) => e instanceof InvalidEventError && e.code === 'future_timestamp' && e.field === 'occurred_at',
    );
    await expect(tally.recordEvent({ apiKeyId: randomUUID(), eventType: 'x' })).rejects.toSatisfy(
      (e) => e instanceof ApiKeyError && e.code === 'unknown_api_key' && e.sqlstate === '28000',
    );
    await expect(tally.recordEvent({ accountId: randomUUID(), eventType: 'x' })).rejects.toSatisfy(
      (e) => e instanceof NotFoundError && e.code === 'account_not_found' && e.sqlstate === 'P0002',
    );
  });

  it('money stays exact both ways, even when the app parses numeric as float globally', async () => {
    const account = await tally.createAccount({ name: 'Money' });
    const tiny = '0.000000000123';
    const big = '999999999999.999999999999';
    const { eventId } = await tally.recordEvent({ accountId: account.id, eventType: 'llm', costUsd: tiny, potentialCostUsd: big, quantity: '2.5' });
    const { rows } = await db.pool.query('select cost_usd::text, potential_cost_usd::text, quantity::text from tally.events where id = $1', [eventId]);
    expect(rows[0]).toEqual({ cost_usd: tiny, potential_cost_usd: big, quantity: '2.500000000000' });

    const floatNumeric = (v: string) => Number.parseFloat(v);
    pg.types.setTypeParser(pg.types.builtins.NUMERIC, floatNumeric);
    pg.types.setTypeParser(pg.types.builtins.INT8, floatNumeric);
    try {
      const price = await tally.setModelPrice({ provider: 'acme', model: 'exact', inputUsdPerMtok: big, outputUsdPerMtok: tiny });
      expect(price.inputUsdPerMtok).toBe(big);
      expect(price.outputUsdPerMtok).toBe(tiny);
    } finally {
      pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v: string) => v);
      pg.types.setTypeParser(pg.types.builtins.INT8, (v: string) => v);
    }
  });

  it('importEvents keeps refusals under its source with line numbers', async () => {
    const account = await tally.createAccount({ name: 'Import' });
    const source = `history-${randomUUID()}.csv`;
    const result = await tally.importEvents({
      source,
      firstIndex: 2,
      events: [
        { accountId: account.id, eventType: 'row', occurredAt: new Date(Date.now() - 30 * 86_400_000).toISOString() },
        { accountId: account.id, eventType: 'row', occurredAt: 'yesterday' },
      ],
    });
    expect(result).toEqual({ accepted: 1, duplicates: 0, conflicts: [], rejected: [{ index: 3, code: 'invalid_value', message: expect.stringMatching(/^occurred_at:/) }] });
    const { rows } = await db.pool.query('select item_index, code from tally.rejected_events where source = $1', [`import:${source}`]);
    expect(rows).toEqual([{ item_index: '3', code: 'invalid_value' }]);
  });

  it('a batch over ingest.max_batch is BatchTooLargeError; setSetting changes and restores the limit', async () => {
    const account = await tally.createAccount({ name: 'Batch' });
    const setting = await tally.setSetting({ name: 'ingest.max_batch', value: 2 });
    expect(setting).toMatchObject({ name: 'ingest.max_batch', kind: 'integer', value: '2', defaultValue: '10000' });
    try {
      const three = [1, 2, 3].map(() => ({ accountId: account.id, eventType: 'x' }));
      await expect(tally.recordEvents(three)).rejects.toSatisfy(
        (e) => e instanceof BatchTooLargeError && e instanceof InvalidParameterError && e.code === 'batch_too_large',
      );
    } finally {
      expect((await tally.setSetting({ name: 'ingest.max_batch', value: null })).value).toBe('10000');
    }
    await expect(tally.setSetting({ name: 'ingest.nope', value: '1' })).rejects.toSatisfy(
      (e) => e instanceof InvalidParameterError && e.code === 'unknown_setting',
    );
    await expect(tally.setSetting({ name: 'ingest.max_batch', value: 0 })).rejects.toSatisfy(
      (e) => e instanceof InvalidParameterError && e.code === 'invalid_parameter',
    );
  });

  it('the authenticated role cannot execute record_events (42501)', async () => {
    const account = await tally.createAccount({ name: 'Guarded' });
    const someone = await createUser(db.pool);
    await expect(
      as(db.pool, user(someone), (c) => tally.using(c).recordEvents([{ accountId: account.id, eventType: 'x' }])),
    ).rejects.toSatisfy((e) => e instanceof ForbiddenError && e.code === 'forbidden' && e.sqlstate === '42501');

    // the same through a pool whose every connection runs as authenticated
    const pool = new pg.Pool({ connectionString: db.url, options: '-c role=authenticated', max: 1 });
    pool.on('error', () => undefined);
    try {
      const asAuthenticated = createTally({ pool });
      await expect(asAuthenticated.recordEvents([{ accountId: account.id, eventType: 'x' }])).rejects.toSatisfy(
        (e) => e instanceof ForbiddenError && e.sqlstate === '42501',
      );
      await asAuthenticated.close(); // not its pool: a no-op
      expect(pool.ended).toBe(false);
    } finally {
      await pool.end();
    }
    expect((await db.pool.query('select count(*)::int as n from tally.events where account_id = $1', [account.id])).rows[0].n).toBe(0);
  });
});

describe('prices and reprice', () => {
  it('reprice recomputes computed costs from the price table', async () => {
    const account = await tally.createAccount({ name: 'Prices' });
    const model = `m-${randomUUID()}`;
    const effectiveFrom = hoursAgo(48);
    const price = await tally.setModelPrice({ provider: 'acme', model, inputUsdPerMtok: '1', outputUsdPerMtok: 2, effectiveFrom });
    expect(price).toMatchObject({ provider: 'acme', model, inputUsdPerMtok: '1.000000000000', outputUsdPerMtok: '2.000000000000' });
    expect(price.effectiveFrom.getTime()).toBe(effectiveFrom.getTime());

    const { eventId } = await tally.recordEvent({ accountId: account.id, eventType: 'llm', provider: 'acme', model, tokensIn: 1_000_000, tokensOut: 500_000, occurredAt: hoursAgo(24) });
    const cost = async () => (await db.pool.query('select cost_usd::text as c from tally.events where id = $1', [eventId])).rows[0].c;
    expect(await cost()).toBe('2.000000000000');

    await tally.setModelPrice({ provider: 'acme', model, inputUsdPerMtok: '3', outputUsdPerMtok: '2', effectiveFrom });
    const from = hoursAgo(72);
    const to = new Date();
    const result = await tally.reprice({ from, to: to.toISOString() });
    expect(result.repriced).toBeGreaterThanOrEqual(1);
    expect(result.from.getTime()).toBe(from.getTime());
    expect(await cost()).toBe('4.000000000000');
    await expect(tally.reprice({ from: to, to: from })).rejects.toSatisfy((e) => e instanceof InvalidParameterError && e.code === 'invalid_parameter');
  });
});

describe('maintenance', () => {
  it('ensurePartitions is idempotent; purgeIdempotencyKeys reports its cutoff', async () => {
    const first = await tally.ensurePartitions({ monthsAhead: 6 });
    expect(first.created.length).toBeGreaterThan(0);
    expect(first.created.every((name) => /^events_p\d{4}_\d{2}/.test(name))).toBe(true);
    expect(first.defaultRows).toBe(0);
    expect(await tally.ensurePartitions({ monthsAhead: 6 })).toEqual({ created: [], movedRows: 0, defaultRows: 0, defaultTruncated: false });
    await expect(tally.ensurePartitions({ monthsAhead: 500 })).rejects.toSatisfy((e) => e instanceof InvalidParameterError);

    const purge = await tally.purgeIdempotencyKeys();
    expect(purge.deleted).toBe(0);
    expect(purge.cutoff).toBeInstanceOf(Date);
    expect(purge.cutoff.getTime()).toBeLessThan(Date.now() - 6 * 86_400_000);
  });
});

describe('meters', () => {
  it('attachMeter meters inserts; detachMeter stops it; bad mappings are invalid_mapping', async () => {
    const account = await tally.createAccount({ name: 'Metered' });
    await db.pool.query('create table public.uploads (id serial primary key, owner uuid not null, size_bytes bigint, note text)');
    const attached = await tally.attachMeter('public.uploads', 'upload', { accountId: 'owner', bytes: 'size_bytes', provider: { value: 's3' } });
    expect(attached).toEqual({
      table: 'public.uploads',
      eventType: 'upload',
      mapping: { accountId: 'owner', bytes: 'size_bytes', provider: { value: 's3' } },
    });
    await db.pool.query('insert into public.uploads (owner, size_bytes) values ($1, 10), ($1, 20)', [account.id]);
    const { rows } = await db.pool.query(
      'select event_type, provider, bytes from tally.events where account_id = $1 order by bytes',
      [account.id],
    );
    expect(rows).toEqual([
      { event_type: 'upload', provider: 's3', bytes: '10' },
      { event_type: 'upload', provider: 's3', bytes: '20' },
    ]);

    expect(await tally.detachMeter('public.uploads')).toBe(true);
    expect(await tally.detachMeter('public.uploads')).toBe(false);
    await expect(tally.attachMeter('public.uploads', 'upload', { accountId: 'owner', bytes: 'note' })).rejects.toSatisfy(
      (e) => e instanceof InvalidParameterError && e.code === 'invalid_mapping' && e.field === 'mapping.bytes',
    );
    await expect(tally.attachMeter('public.no_such_table', 'upload', { accountId: 'owner' })).rejects.toSatisfy(
      (e) => e instanceof NotFoundError && e.sqlstate === '42P01',
    );
  });
});

describe('input validation and connection errors', () => {
  // Nothing listens on port 1: a wrapper that reached the network would fail with ConnectionError.
  const offline = createTally({ connectionString: 'postgres://postgres@127.0.0.1:1/none' });
  afterAll(() => offline.close());

  it.each([
    ['createAccount', () => offline.createAccount({ name: 5 as unknown as string })],
    ['createAccount (unknown field)', () => offline.createAccount({ name: 'x', timeZone: 'UTC' } as never)],
    ['setAccountMember', () => offline.setAccountMember({ accountId: randomUUID(), userId: 'not-a-uuid', role: 'admin' })],
    ['setAccountMember (role)', () => offline.setAccountMember({ accountId: randomUUID(), userId: randomUUID(), role: 'king' as never })],
    ['recordEvents (typo)', () => offline.recordEvents([{ eventType: 'x', tokenIn: 5 } as never])],
    ['recordEvent (money as float string)', () => offline.recordEvent({ eventType: 'x', costUsd: '1e-9' })],
    ['setModelPrice', () => offline.setModelPrice({ provider: 'a', model: 'b', inputUsdPerMtok: -1, outputUsdPerMtok: '1' })],
    ['reprice', () => offline.reprice({ from: '2026-01-01', to: new Date() })],
    ['revokeApiKey', () => offline.revokeApiKey('nope')],
  ])('%s is refused by its schema before any round trip', async (_name, call) => {
    await expect(call()).rejects.toSatisfy((e) => e instanceof InvalidInputError && e.code === 'invalid_input' && e.issues.length > 0);
  });

  it('a refused connection is a transient ConnectionError', async () => {
    await expect(offline.purgeIdempotencyKeys()).rejects.toSatisfy(
      (e) => e instanceof ConnectionError && e.transient && e.code === 'connection_error',
    );
  });

  it('a terminated backend is a transient ConnectionError', async () => {
    const client = await db.pool.connect();
    client.on('error', () => undefined);
    const pid = (await client.query('select pg_backend_pid() as pid')).rows[0].pid;
    await db.pool.query('select pg_terminate_backend($1)', [pid]);
    let caught: unknown;
    try {
      await tally.using(client).purgeIdempotencyKeys();
    } catch (err) {
      caught = err;
    } finally {
      client.release(true);
    }
    expect(caught).toBeInstanceOf(ConnectionError);
    expect((caught as ConnectionError).transient).toBe(true);
  });

  it.each([
    [{ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:5432' }, true],
    [{ code: '57P01', message: 'terminating connection due to administrator command', severity: 'FATAL' }, true],
    [{ code: '57P03', message: 'the database system is starting up', severity: 'FATAL' }, true],
    [{ code: '08006', message: 'connection failure' }, true],
    [new Error('Connection terminated unexpectedly'), true],
    [{ code: '40001', message: 'could not serialize access' }, true],
    [{ code: '22023', hint: 'batch_too_large', message: 'events: too many' }, false],
    [{ code: '42P01', message: 'relation "x" does not exist' }, false],
  ])('toTallyError(%j).transient is %s', (err, transient) => {
    const mapped = toTallyError(err);
    expect(mapped).toBeInstanceOf(DatabaseError);
    expect((mapped as DatabaseError).transient).toBe(transient);
  });
});
