/**
 * The UsageTracker against a real database, including the failures it exists for: server
 * connections killed mid-stream (pg_terminate_backend), an outage where the server refuses
 * connections and comes back, and a reply lost after the server committed. Through all of
 * them every tracked event must land exactly once, and every event the tracker could not
 * deliver must be counted and reported, never lost silently.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTally, type Tally } from '../src/client/client.ts';
import { TallyError } from '../src/errors.ts';
import { ConnectionError } from '../src/client/errors.ts';
import { QueueFullError, UsageTracker, type TrackerDrop, type TrackerFailure, type TrackerRejection } from '../src/ingest/tracker.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually } from './helpers/wait.ts';

let db: TestDatabase;
let tally: Tally;
beforeAll(async () => {
  db = await migratedDatabase();
  tally = createTally({ pool: db.pool });
});
afterAll(async () => {
  await db?.drop();
});

const newAccount = async () => (await tally.createAccount({ name: `tracker ${randomUUID()}` })).id;

async function ledger(accountId: string): Promise<{ rows: number; keys: number }> {
  const { rows } = await db.pool.query(
    'select count(*)::int as rows, count(distinct idempotency_key)::int as keys from tally.events where account_id = $1',
    [accountId],
  );
  return rows[0];
}

/**
 * A TCP proxy in front of the test server, to fail the network the way a restart does:
 * `outage()` resets every connection and refuses new ones until `restore()`;
 * `loseReplies(n)` lets the next n distinct record_events calls commit on the server, then
 * cuts the connection before the reply reaches the client.
 */
class FlakyProxy {
  readonly #server = net.createServer((client) => this.#pipe(client));
  readonly #sockets = new Set<net.Socket>();
  #port = 0;
  #repliesToLose = 0;
  readonly #lostCalls = new Set<string>();
  readonly #target: { host: string; port: number };
  lostReplies = 0;

  constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(this.#port, '127.0.0.1', resolve));
    this.#port = (this.#server.address() as net.AddressInfo).port;
    return `127.0.0.1:${this.#port}`;
  }

  async outage(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  restore(): Promise<string> {
    return this.listen();
  }

  loseReplies(n: number): void {
    this.#repliesToLose = n;
  }

  async close(): Promise<void> {
    await this.outage().catch(() => undefined);
  }

  #pipe(client: net.Socket): void {
    const upstream = net.connect(this.#target.port, this.#target.host);
    for (const s of [client, upstream]) {
      this.#sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        this.#sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    let losing = false;
    let reply = Buffer.alloc(0);
    client.on('data', (chunk) => {
      // each distinct call loses its reply once: its retry (the same bytes) gets through
      const call = chunk.toString('latin1');
      if (this.#repliesToLose > 0 && chunk.includes('record_events') && !this.#lostCalls.has(call)) {
        this.#repliesToLose--;
        this.#lostCalls.add(call);
        losing = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (!losing) {
        client.write(chunk);
        return;
      }
      // ReadyForQuery ('Z', length 5, status) ends the reply: the transaction has committed
      reply = Buffer.concat([reply, chunk]);
      const n = reply.length;
      if (n >= 6 && reply[n - 6] === 0x5a && reply.readInt32BE(n - 5) === 5) {
        this.lostReplies++;
        client.destroy();
        upstream.destroy();
      }
    });
  }
}

function proxyUrl(hostPort: string): string {
  const url = new URL(db.url);
  url.host = hostPort;
  return url.toString();
}

function targetOf(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 5432) };
}

describe('UsageTracker', () => {
  it('lands many events exactly once, with counters that add up', async () => {
    const accountId = await newAccount();
    const tracker = new UsageTracker(tally, { batchSize: 500, flushIntervalMs: 20 });
    let someKey = '';
    const at = new Date();
    for (let i = 0; i < 5000; i++) {
      // the first 100 events reuse 50 keys: the app's own duplicates (the same event twice;
      // a key reused with another payload would be a conflict)
      const key = tracker.track(
        i < 100
          ? { accountId, eventType: 'api_call', statusCode: 200, latencyMs: i % 50, occurredAt: at, idempotencyKey: `dup-${i % 50}` }
          : { accountId, eventType: 'api_call', statusCode: 200, latencyMs: i % 97 },
      );
      if (i === 4000) someKey = key;
      if (i % 700 === 0) await sleep(1);
    }
    const stats = await tracker.close();
    expect(stats).toMatchObject({
      tracked: 5000, queued: 0, inFlight: 0, sent: 5000, accepted: 4950, duplicates: 50, conflicts: 0, rejected: 0, dropped: 0, failed: 0, failedBatches: 0,
    });
    expect(await ledger(accountId)).toEqual({ rows: 4950, keys: 4950 });
    // track() returned the key it assigned, and the event carries it
    const { rows } = await db.pool.query('select count(*)::int as n from tally.events where account_id = $1 and idempotency_key = $2', [accountId, someKey]);
    expect(rows[0].n).toBe(1);
    expect(await tally.close()).toBeUndefined(); // the test's pool is not the client's to end
  });

  it('THE KILL TEST: connections terminated mid-stream, every event lands exactly once', async () => {
    const accountId = await newAccount();
    const applicationName = `tally-kill-${randomUUID().slice(0, 8)}`;
    const tracker = new UsageTracker(
      { connectionString: db.url, applicationName },
      { batchSize: 100, flushIntervalMs: 5, concurrency: 2, retryBaseMs: 5, retryMaxDelayMs: 50 },
    );

    let producing = true;
    let kills = 0;
    const killer = (async () => {
      while (producing) {
        const { rows } = await db.pool.query(
          'select count(*) filter (where pg_terminate_backend(pid))::int as n from pg_stat_activity where application_name = $1',
          [applicationName],
        );
        kills += rows[0].n;
        await sleep(2);
      }
    })();
    // several producers stream events; they keep going until the kills have forced retries
    const producer = async (p: number) => {
      let i = 0;
      while (i < 1200 || (tracker.stats().retries < 20 && i < 20_000)) {
        tracker.track({ accountId, eventType: 'api_call', endpoint: '/v1/things', method: 'POST', statusCode: 201, properties: { p, i } });
        i++;
        if (i % 20 === 0) await sleep(1);
      }
      return i;
    };
    const produced = await Promise.all([0, 1, 2, 3, 4].map(producer));
    producing = false;
    await killer;
    const stats = await tracker.close();

    const total = produced.reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThanOrEqual(6000);
    expect(kills).toBeGreaterThan(0);
    expect(stats.retries).toBeGreaterThanOrEqual(20);
    expect(stats).toMatchObject({ tracked: total, sent: total, queued: 0, inFlight: 0, rejected: 0, dropped: 0, failed: 0 });
    expect(stats.accepted + stats.duplicates).toBe(total);
    expect(await ledger(accountId)).toEqual({ rows: total, keys: total });
  });

  it('recovers from an outage: every new connection killed for a while, then the server is back', async () => {
    const accountId = await newAccount();
    const applicationName = `tally-outage-${randomUUID().slice(0, 8)}`;
    const tracker = new UsageTracker(
      { connectionString: db.url, applicationName },
      { batchSize: 50, flushIntervalMs: 5, retryBaseMs: 5, retryMaxDelayMs: 40 },
    );
    let down = true;
    let kills = 0;
    const killer = (async () => {
      while (down) {
        const { rows } = await db.pool.query(
          'select count(*) filter (where pg_terminate_backend(pid))::int as n from pg_stat_activity where application_name = $1',
          [applicationName],
        );
        kills += rows[0].n;
      }
    })();
    let tracked = 0;
    while (tracked < 2000 || tracker.stats().retries < 5) {
      tracker.track({ accountId, eventType: 'during_outage' });
      tracked++;
      if (tracked % 50 === 0) await sleep(1);
    }
    down = false;
    await killer;
    for (let i = 0; i < 500; i++) tracker.track({ accountId, eventType: 'after_outage' });
    tracked += 500;

    const stats = await tracker.close();
    expect(kills).toBeGreaterThan(0);
    expect(stats).toMatchObject({ tracked, sent: tracked, failed: 0, dropped: 0, rejected: 0, inFlight: 0, queued: 0 });
    expect(await ledger(accountId)).toEqual({ rows: tracked, keys: tracked });
  });

  it('recovers from a restart: connections reset, then refused, then accepted again', async () => {
    const accountId = await newAccount();
    const proxy = new FlakyProxy(targetOf(db.url));
    const tracker = new UsageTracker(
      { connectionString: proxyUrl(await proxy.listen()) },
      { batchSize: 100, flushIntervalMs: 5, retryBaseMs: 5, retryMaxDelayMs: 50 },
    );
    try {
      for (let i = 0; i < 300; i++) tracker.track({ accountId, eventType: 'before' });
      await tracker.flush();
      expect(tracker.stats().sent).toBe(300);

      await proxy.outage();
      for (let i = 0; i < 1000; i++) tracker.track({ accountId, eventType: 'during' });
      await eventually(() => expect(tracker.stats().retries).toBeGreaterThanOrEqual(5), { intervalMs: 5 });
      expect(tracker.stats().sent).toBe(300); // nothing got through while the server was away
      await proxy.restore();

      for (let i = 0; i < 200; i++) tracker.track({ accountId, eventType: 'after' });
      const stats = await tracker.close();
      expect(stats).toMatchObject({ tracked: 1500, sent: 1500, accepted: 1500, failed: 0, dropped: 0 });
      expect(await ledger(accountId)).toEqual({ rows: 1500, keys: 1500 });
    } finally {
      await proxy.close();
    }
  });

  it('a reply lost after the commit: the retry finds its own events as duplicates, nothing counts twice', async () => {
    const accountId = await newAccount();
    const proxy = new FlakyProxy(targetOf(db.url));
    const tracker = new UsageTracker({ connectionString: proxyUrl(await proxy.listen()) }, { batchSize: 100, retryBaseMs: 5 });
    try {
      proxy.loseReplies(2);
      for (let i = 0; i < 300; i++) tracker.track({ accountId, eventType: 'api_call' });
      const stats = await tracker.close();
      expect(proxy.lostReplies).toBe(2);
      // the two batches whose replies were lost had committed: their retries are duplicates
      expect(stats).toMatchObject({ tracked: 300, sent: 300, accepted: 100, duplicates: 200, failed: 0 });
      expect(stats.retries).toBe(2);
      expect(await ledger(accountId)).toEqual({ rows: 300, keys: 300 });
    } finally {
      await proxy.close();
    }
  });

  it('reports rejected events with their codes; valid siblings are stored', async () => {
    const accountId = await newAccount();
    const rejections: TrackerRejection[] = [];
    const tracker = new UsageTracker(tally, { batchSize: 1000, flushIntervalMs: 60_000, onRejected: (r) => rejections.push(...r) });
    const circular: Record<string, unknown> = {};
    circular.self = circular;

    tracker.track({ accountId, eventType: 'ok', statusCode: 200 });
    tracker.track({ accountId, eventType: 'bad', statusCode: 700 });
    tracker.track({ accountId: randomUUID(), eventType: 'bad' });
    tracker.track({ accountId, eventType: 'bad', tokenIn: 5 } as never);
    tracker.track({ accountId, eventType: 'bad', occurredAt: new Date(Date.now() + 3_600_000) });
    tracker.track({ accountId, eventType: 'ok', tokensIn: 10 });
    // jsonb cannot hold \u0000: the server refuses the whole array, the tracker isolates the culprit
    tracker.track({ accountId, eventType: 'bad', properties: { note: 'a\u0000b' } });
    // not even JSON: refused in track()
    tracker.track({ accountId, eventType: 'bad', properties: circular });
    tracker.track({ accountId, eventType: 'ok' });

    const stats = await tracker.close();
    expect(stats).toMatchObject({ tracked: 9, sent: 3, accepted: 3, rejected: 6, failed: 0, dropped: 0 });
    expect(rejections.map((r) => r.code).sort()).toEqual(
      ['account_not_found', 'future_timestamp', 'invalid_event', 'invalid_event', 'out_of_range', 'unknown_field'].sort(),
    );
    const outOfRange = rejections.find((r) => r.code === 'out_of_range');
    expect(outOfRange?.message).toMatch(/^status_code:/);
    expect(outOfRange?.event).toMatchObject({ account_id: accountId, status_code: 700, idempotency_key: expect.any(String) });
    expect(await ledger(accountId)).toEqual({ rows: 3, keys: 3 });

    // the validator's refusals are kept in the dead-letter table as sent
    const keys = rejections.map((r) => r.event.idempotency_key).filter((k) => typeof k === 'string');
    const { rows } = await db.pool.query(
      "select code from tally.rejected_events where source = 'record_events' and payload->>'idempotency_key' = any($1) order by code",
      [keys],
    );
    expect(rows.map((r) => r.code)).toEqual(['account_not_found', 'future_timestamp', 'out_of_range', 'unknown_field']);
  });

  it('splits batches the server finds too large (ingest.max_batch lowered below batchSize)', async () => {
    const accountId = await newAccount();
    await tally.setSetting({ name: 'ingest.max_batch', value: 40 });
    try {
      const tracker = new UsageTracker(tally, { batchSize: 100, flushIntervalMs: 10 });
      for (let i = 0; i < 250; i++) tracker.track({ accountId, eventType: 'x' });
      const stats = await tracker.close();
      expect(stats).toMatchObject({ tracked: 250, sent: 250, failed: 0, rejected: 0 });
      expect(await ledger(accountId)).toEqual({ rows: 250, keys: 250 });
    } finally {
      await tally.setSetting({ name: 'ingest.max_batch', value: null });
    }
  });

  describe('overflow', () => {
    const fill = async (overflow: 'drop-newest' | 'drop-oldest') => {
      const accountId = await newAccount();
      const drops: TrackerDrop[] = [];
      const tracker = new UsageTracker(tally, { maxQueue: 10, overflow, flushIntervalMs: 60_000, onDropped: (d) => drops.push(d) });
      for (let i = 0; i < 15; i++) tracker.track({ accountId, eventType: 'x', properties: { i } });
      expect(tracker.stats()).toMatchObject({ tracked: 15, queued: 10, dropped: 5 });
      const stats = await tracker.close();
      const dropped = drops.flatMap((d) => d.events.map((e) => (e.properties as { i: number }).i));
      const { rows } = await db.pool.query("select (properties->>'i')::int as i from tally.events where account_id = $1 order by 1", [accountId]);
      return { stats, drops, dropped, stored: rows.map((r) => r.i) };
    };

    it("'drop-newest' (the default) refuses new events and reports them", async () => {
      const { stats, drops, dropped, stored } = await fill('drop-newest');
      expect(stats).toMatchObject({ sent: 10, dropped: 5 });
      expect(drops.every((d) => d.reason === 'overflow')).toBe(true);
      expect(dropped).toEqual([10, 11, 12, 13, 14]);
      expect(stored).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    });

    it("'drop-oldest' gives up the longest-waiting events and reports them", async () => {
      const { stats, dropped, stored } = await fill('drop-oldest');
      expect(stats).toMatchObject({ sent: 10, dropped: 5 });
      expect(dropped).toEqual([0, 1, 2, 3, 4]);
      expect(stored).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    });

    it("'throw' makes track() throw QueueFullError", async () => {
      const accountId = await newAccount();
      const tracker = new UsageTracker(tally, { maxQueue: 10, overflow: 'throw', flushIntervalMs: 60_000 });
      for (let i = 0; i < 10; i++) tracker.track({ accountId, eventType: 'x' });
      expect(() => tracker.track({ accountId, eventType: 'x' })).toThrow(QueueFullError);
      let code: string | undefined;
      try {
        tracker.track({ accountId, eventType: 'x' });
      } catch (err) {
        code = (err as TallyError).code;
      }
      expect(code).toBe('queue_full');
      expect(await tracker.close()).toMatchObject({ tracked: 12, sent: 10, dropped: 2 });
    });
  });

  describe('flush and close', () => {
    it('flush() sends what was tracked; close() drains the rest; track() after close throws', async () => {
      const accountId = await newAccount();
      const tracker = new UsageTracker(tally, { batchSize: 1000, flushIntervalMs: 60_000 });
      for (let i = 0; i < 10; i++) tracker.track({ accountId, eventType: 'x' });
      await tracker.flush();
      expect(tracker.stats()).toMatchObject({ sent: 10, queued: 0 });

      for (let i = 0; i < 1234; i++) tracker.track({ accountId, eventType: 'x' });
      const stats = await tracker.close();
      expect(stats).toMatchObject({ tracked: 1244, sent: 1244, queued: 0, inFlight: 0 });
      expect(await ledger(accountId)).toEqual({ rows: 1244, keys: 1244 });

      expect(() => tracker.track({ accountId, eventType: 'x' })).toThrow(TallyError);
      expect(await tracker.close()).toEqual(stats); // idempotent
      await tracker.flush(); // a no-op, not an error
    });

    it('timers and idle connections never keep an app alive; close() on the way out lands the events', async () => {
      const accountId = await newAccount();
      const trackerModule = fileURLToPath(new URL('../src/ingest/tracker.ts', import.meta.url));
      const script = `
        import { UsageTracker } from ${JSON.stringify(trackerModule)};
        const [url, accountId, close] = process.argv.slice(1);
        const tracker = new UsageTracker({ connectionString: url }, { flushIntervalMs: 60_000 });
        for (let i = 0; i < 100; i++) tracker.track({ accountId, eventType: 'from_child' });
        await tracker.flush();
        tracker.track({ accountId, eventType: 'from_child' });
        if (close === 'close') console.log(JSON.stringify(await tracker.close()));
      `;
      const run = (mode: string) =>
        new Promise<string>((resolve, reject) => {
          // killed after 30 s: a process held open by the tracker fails the test rather than hanging it
          execFile(process.execPath, ['--input-type=module', '-e', script, db.url, accountId, mode], { timeout: 30_000 }, (err, stdout) =>
            err ? reject(err) : resolve(stdout),
          );
        });
      await run('no-close'); // exits by itself: the 101st event is lost, which is why apps call close()
      expect((await ledger(accountId)).rows).toBe(100);
      const stats = JSON.parse(await run('close'));
      expect(stats).toMatchObject({ tracked: 101, sent: 101 });
      expect((await ledger(accountId)).rows).toBe(201);
    });

    it('gives a batch up after maxRetryMs and hands its events to onError with their keys', async () => {
      const accountId = await newAccount();
      const proxy = new FlakyProxy(targetOf(db.url));
      const failures: TrackerFailure[] = [];
      const tracker = new UsageTracker(
        { connectionString: proxyUrl(await proxy.listen()) },
        { flushIntervalMs: 5, maxRetryMs: 150, retryBaseMs: 5, retryMaxDelayMs: 20, onError: (f) => failures.push(f) },
      );
      try {
        await proxy.outage();
        for (let i = 0; i < 50; i++) tracker.track({ accountId, eventType: 'x' });
        await tracker.flush();
        expect(tracker.stats()).toMatchObject({ failed: 50, failedBatches: 1, sent: 0, inFlight: 0 });
        expect(failures).toHaveLength(1);
        expect(failures[0]?.reason).toBe('retries_exhausted');
        expect(failures[0]?.error).toBeInstanceOf(ConnectionError);
        expect(failures[0]?.attempts).toBeGreaterThan(1);

        // the app can replay them later: same keys, so a replay can never double-count
        const events = failures[0]?.events ?? [];
        expect(new Set(events.map((e) => e.idempotency_key)).size).toBe(50);
        const replay = await tally.recordEvents(events.map((e) => ({ accountId: e.account_id as string, eventType: 'x', idempotencyKey: e.idempotency_key as string })));
        expect(replay.accepted).toBe(50);
        await tracker.close();
      } finally {
        await proxy.close();
      }
    });

    it('close() gives up after its timeout and reports what is left', async () => {
      const accountId = await newAccount();
      const proxy = new FlakyProxy(targetOf(db.url));
      const failures: TrackerFailure[] = [];
      const drops: TrackerDrop[] = [];
      const tracker = new UsageTracker(
        { connectionString: proxyUrl(await proxy.listen()) },
        { batchSize: 10, flushIntervalMs: 5, retryBaseMs: 5, retryMaxDelayMs: 20, onError: (f) => failures.push(f), onDropped: (d) => drops.push(d) },
      );
      try {
        await proxy.outage();
        for (let i = 0; i < 30; i++) tracker.track({ accountId, eventType: 'x' });
        await eventually(() => expect(tracker.stats().retries).toBeGreaterThanOrEqual(2), { intervalMs: 5 });
        const stats = await tracker.close({ timeoutMs: 100 });
        expect(stats).toMatchObject({ tracked: 30, sent: 0, failed: 10, dropped: 20, queued: 0, inFlight: 0 });
        expect(failures.map((f) => [f.reason, f.events.length])).toEqual([['close_timeout', 10]]);
        expect(drops.map((d) => [d.reason, d.events.length])).toEqual([['close_timeout', 20]]);
      } finally {
        await proxy.close();
      }
    });
  });
});
