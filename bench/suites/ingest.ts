/**
 * Ingestion throughput, side by side on one database, each case storing the same N new
 * events (the ledger is truncated and checkpointed between cases):
 *   (a) copy_bare                 COPY (CSV) into a bare copy of tally.events: same columns,
 *                                 indexes and partitions (read from the catalog), no logic —
 *                                 the physical limit every other case is compared with
 *                                 (median of 3 runs)
 *   (b) record_events_batch1000   tally.record_events, 1,000 events per call, one connection
 *   (c) tally_import              importFile (what `tally import` runs) on an NDJSON file,
 *                                 default options (chunks of 10,000 on 2 sessions)
 *   (d) record_event_single       tally.record_event one at a time on one connection, for a
 *                                 smaller sample: events/s and per-call latency (median, p99)
 *   (e) tracker_8_producers       8 producers, each with its own UsageTracker (batches of
 *                                 1,000, its own connection), tracking concurrently
 * N: BENCH_INGEST_EVENTS (default 200,000); (d)'s sample: BENCH_INGEST_SINGLE (default 2,000).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { EVENT_FIELDS } from '../../src/client/events.ts';
import type { UsageEvent } from '../../src/client/events.ts';
import { importFile } from '../../src/ingest/import.ts';
import { runMigrations } from '../../src/database/migrate.ts';
import { UsageTracker } from '../../src/ingest/tracker.ts';
import { median, type BenchResult, type BenchSuite } from '../lib.ts';
import { seededRandom } from '../../src/seeded-random.ts';

const EVENTS = Number(process.env.BENCH_INGEST_EVENTS ?? 200_000);
const SINGLE = Math.min(EVENTS, Number(process.env.BENCH_INGEST_SINGLE ?? 2_000));
const BATCH = 1_000;
const PRODUCERS = 8;
const COPY_RUNS = 3;

type WireEvent = Record<string, unknown>;

interface Tenants {
  accounts: string[];
  /** API key id → its account. */
  keys: Map<string, string>;
}


/** A realistic mix: api_request 50 %, llm_call 35 %, file_upload 15 %; 30 % name only their API key. */
function generateEvents(n: number, tenants: Tenants): WireEvent[] {
  const rnd = seededRandom(42);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rnd() * items.length)]!;
  const keys = [...tenants.keys.keys()];
  const now = Date.now();
  const events: WireEvent[] = [];
  for (let i = 0; i < n; i++) {
    const tenant = rnd() < 0.3 ? { api_key_id: pick(keys) } : { account_id: pick(tenants.accounts) };
    // within the last hour, so that every case writes the same partition
    const base = { ...tenant, occurred_at: new Date(now - Math.floor(rnd() * 3_600_000)).toISOString(), idempotency_key: `bench-${i}` };
    const kind = rnd();
    if (kind < 0.5) {
      const status = rnd() < 0.95 ? 200 : pick([400, 404, 429, 500]);
      events.push({
        ...base,
        event_type: 'api_request',
        endpoint: pick(['/v1/search', '/v1/documents', '/v1/documents/{id}', '/v1/chat']),
        method: pick(['GET', 'GET', 'POST']),
        status_code: status,
        ...(status >= 400 ? { error_message: `upstream returned ${status}` } : {}),
        latency_ms: Math.round(rnd() * 800 * 10) / 10,
      });
    } else if (kind < 0.85) {
      const [provider, model] = pick([
        ['openai', 'gpt-4o'],
        ['openai', 'gpt-4o-mini'],
        ['anthropic', 'claude-sonnet'],
      ] as const);
      const cached = rnd() < 0.2;
      events.push({
        ...base,
        event_type: 'llm_call',
        provider,
        model,
        tokens_in: Math.floor(rnd() * 4000) + 10,
        tokens_out: Math.floor(rnd() * 800) + 1,
        cached,
        ...(rnd() < 0.3 ? { cost_usd: (rnd() / 50).toFixed(6) } : {}),
        latency_ms: Math.floor(rnd() * 5000),
        properties: { feature: pick(['chat', 'summarize', 'classify']), user: `u${Math.floor(rnd() * 500)}` },
      });
    } else {
      const files = Math.floor(rnd() * 3) + 1;
      events.push({
        ...base,
        event_type: 'file_upload',
        file_type: pick(['image/png', 'application/pdf', 'text/csv']),
        files,
        bytes: files * Math.floor(rnd() * 5_000_000),
      });
    }
  }
  return events;
}

// The bare table's columns: what the ingestion functions write, minus what the database derives.
const BARE_COLUMNS = [
  'account_id', 'occurred_at', 'api_key_id', 'event_type', 'provider', 'model', 'endpoint', 'method', 'status_code', 'success',
  'error_message', 'file_type', 'files', 'bytes', 'tokens_in', 'tokens_out', 'cached', 'cost_usd', 'cost_given', 'latency_ms',
  'quantity', 'idempotency_key', 'properties',
] as const;

function csvCell(value: unknown): string {
  if (value === undefined || value === null) return '';
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The events as the rows the ledger would hold (tenant resolved, success derived), in CSV. */
function bareCsv(events: WireEvent[], tenants: Tenants): Buffer {
  const lines = events.map((e) => {
    const row: Record<string, unknown> = {
      ...e,
      account_id: e.account_id ?? tenants.keys.get(e.api_key_id as string),
      success: e.status_code === undefined ? e.error_message === undefined : (e.status_code as number) < 400,
      cached: e.cached ?? false,
      latency_ms: e.latency_ms === undefined ? undefined : Math.round(e.latency_ms as number),
      cost_given: e.cost_usd !== undefined,
      quantity: 1,
    };
    return BARE_COLUMNS.map((c) => csvCell(row[c])).join(',');
  });
  return Buffer.from(lines.join('\n') + '\n');
}

/** UsageEvent (camelCase), as an app hands it to the tracker. */
function toUsageEvent(e: WireEvent): UsageEvent {
  const camel = Object.fromEntries(Object.entries(EVENT_FIELDS).map(([c, s]) => [s, c]));
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [camel[k] ?? k, v])) as unknown as UsageEvent;
}

async function query<T extends pg.QueryResultRow = pg.QueryResultRow>(pool: pg.Pool, sql: string, values?: unknown[]): Promise<T[]> {
  return (await pool.query<T>(sql, values)).rows;
}

/** A copy of tally.events with the same columns, indexes and partitions, and no logic. */
async function createBareTable(pool: pg.Pool): Promise<void> {
  const [{ key } = { key: '' }] = await query<{ key: string }>(pool, `select pg_get_partkeydef('tally.events'::regclass) as key`);
  await pool.query(`create schema bench; create table bench.events (like tally.events including all) partition by ${key}`);
  const parts = await query<{ name: string; bound: string }>(
    pool,
    `select c.relname as name, pg_get_expr(c.relpartbound, c.oid) as bound
       from pg_inherits i join pg_class c on c.oid = i.inhrelid
      where i.inhparent = 'tally.events'::regclass order by 1`,
  );
  for (const p of parts) await pool.query(`create table bench.${pg.escapeIdentifier(p.name)} partition of bench.events ${p.bound}`);
}

/** Empties the ledger (and the bare table) and checkpoints, so each case starts alike. */
async function reset(pool: pg.Pool): Promise<void> {
  await pool.query('truncate tally.events, tally.idempotency_keys, tally.rejected_events');
  await pool.query('truncate bench.events');
  await pool.query('checkpoint').catch(() => undefined);
}

async function countEvents(pool: pg.Pool, table = 'tally.events'): Promise<number> {
  const [row] = await query<{ n: number }>(pool, `select count(*)::int as n from ${table}`);
  return row?.n ?? 0;
}

function expectStored(what: string, stored: number, expected: number): void {
  if (stored !== expected) throw new Error(`${what}: stored ${stored} events, expected ${expected}`);
}

async function timed(work: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await work();
  return performance.now() - start;
}

const perSecond = (n: number, ms: number) => Math.round((n / ms) * 1000);

export const suite: BenchSuite = {
  name: 'ingest',
  description: `COPY into a bare table vs record_events ×${BATCH} vs tally import vs record_event vs ${PRODUCERS} trackers (${EVENTS.toLocaleString('en-US')} events each)`,
  async run(ctx) {
    const db = await ctx.createDatabase();
    const pool = new pg.Pool({ connectionString: db.url, max: 4 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-bench-ingest-'));
    try {
      await runMigrations(db.url);
      const tenants: Tenants = { accounts: [], keys: new Map() };
      for (let a = 0; a < 5; a++) {
        const [acct] = await query<{ id: string }>(pool, 'select id from tally.create_account(p_name => $1)', [`bench account ${a}`]);
        tenants.accounts.push(acct!.id);
        for (let k = 0; k < 2; k++) {
          const [key] = await query<{ id: string }>(pool, 'select id from tally.create_api_key(p_account_id => $1::uuid, p_name => $2)', [acct!.id, `key ${k}`]);
          tenants.keys.set(key!.id, acct!.id);
        }
      }
      for (const [provider, model, input, output] of [
        ['openai', 'gpt-4o', '2.5', '10'],
        ['openai', 'gpt-4o-mini', '0.15', '0.6'],
        ['anthropic', 'claude-sonnet', '3', '15'],
      ]) {
        await pool.query(
          `select tally.set_model_price(p_provider => $1, p_model => $2, p_input_usd_per_mtok => $3::numeric, p_output_usd_per_mtok => $4::numeric, p_effective_from => now() - interval '1 day')`,
          [provider, model, input, output],
        );
      }
      await createBareTable(pool);

      ctx.log(`generating ${EVENTS.toLocaleString('en-US')} events`);
      const events = generateEvents(EVENTS, tenants);
      const csv = bareCsv(events, tenants);
      const batches: string[] = [];
      for (let i = 0; i < events.length; i += BATCH) batches.push(JSON.stringify(events.slice(i, i + BATCH)));
      const file = path.join(dir, 'events.ndjson');
      fs.writeFileSync(file, events.map((e) => JSON.stringify(e)).join('\n') + '\n');
      const singles = events.slice(0, SINGLE).map((e) => JSON.stringify(e));
      const usageEvents = events.map(toUsageEvent);

      // (a) the physical limit: the median of 3 runs, as every ratio depends on it
      const copyRuns: number[] = [];
      for (let run = 0; run < COPY_RUNS; run++) {
        await reset(pool);
        copyRuns.push(
          await timed(async () => {
            const client = await pool.connect();
            try {
              await pipeline(Readable.from([csv]), client.query(copyFrom(`copy bench.events (${BARE_COLUMNS.join(', ')}) from stdin with (format csv)`)));
            } finally {
              client.release();
            }
          }),
        );
        expectStored('copy_bare', await countEvents(pool, 'bench.events'), EVENTS);
      }
      const copyMs = median(copyRuns);
      ctx.log(`copy_bare: ${copyRuns.map((ms) => (ms / 1000).toFixed(1)).join(' / ')} s`);

      // (b) record_events, 1,000 per call, one connection
      await reset(pool);
      const batchMs = await timed(async () => {
        const client = await pool.connect();
        try {
          for (const batch of batches) await client.query('select tally.record_events(p_events => $1::jsonb)', [batch]);
        } finally {
          client.release();
        }
      });
      expectStored('record_events_batch1000', await countEvents(pool), EVENTS);
      ctx.log(`record_events_batch1000: ${(batchMs / 1000).toFixed(1)} s`);

      // (c) tally import of the same events as NDJSON
      await reset(pool);
      let importRate = 0;
      const importMs = await timed(async () => {
        const summary = await importFile({ pool, path: file, source: 'bench' });
        if (summary.accepted !== EVENTS) throw new Error(`tally_import: accepted ${summary.accepted} of ${EVENTS} (${JSON.stringify(summary.firstRejections)})`);
        importRate = summary.rowsPerSecond;
      });
      expectStored('tally_import', await countEvents(pool), EVENTS);
      ctx.log(`tally_import: ${(importMs / 1000).toFixed(1)} s (${importRate} rows/s by its own summary)`);

      // (d) record_event, one at a time
      await reset(pool);
      const latencies: number[] = [];
      const singleMs = await timed(async () => {
        const client = await pool.connect();
        try {
          for (const event of singles) {
            const start = performance.now();
            await client.query('select * from tally.record_event(p_event => $1::jsonb)', [event]);
            latencies.push(performance.now() - start);
          }
        } finally {
          client.release();
        }
      });
      expectStored('record_event_single', await countEvents(pool), SINGLE);
      latencies.sort((x, y) => x - y);
      const p99 = latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)] ?? Number.NaN;
      ctx.log(`record_event_single: ${(singleMs / 1000).toFixed(1)} s for ${SINGLE.toLocaleString('en-US')}`);

      // (e) 8 producers, each with its own tracker and connection, tracking at once
      await reset(pool);
      const share = Math.ceil(EVENTS / PRODUCERS);
      const trackers = Array.from(
        { length: PRODUCERS },
        (_, p) => new UsageTracker({ connectionString: db.url, applicationName: `bench-producer-${p}` }, { batchSize: BATCH, flushIntervalMs: 50, maxQueue: EVENTS }),
      );
      let trackerStats: Awaited<ReturnType<UsageTracker['close']>>[] = [];
      const trackerMs = await timed(async () => {
        trackerStats = await Promise.all(
          trackers.map(async (tracker, p) => {
            const mine = usageEvents.slice(p * share, (p + 1) * share);
            for (let i = 0; i < mine.length; i++) {
              tracker.track(mine[i]!);
              // a producer hands over between requests, so the 8 of them interleave
              if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve));
            }
            return tracker.close();
          }),
        );
      });
      const sent = trackerStats.reduce((sum, s) => sum + s.accepted, 0);
      if (sent !== EVENTS) throw new Error(`tracker_${PRODUCERS}_producers: accepted ${sent} of ${EVENTS} (${JSON.stringify(trackerStats[0])})`);
      expectStored(`tracker_${PRODUCERS}_producers`, await countEvents(pool), EVENTS);
      ctx.log(`tracker_${PRODUCERS}_producers: ${(trackerMs / 1000).toFixed(1)} s`);

      const results: BenchResult[] = [
        { name: 'copy_bare', value: perSecond(EVENTS, copyMs), unit: 'events/s', note: `COPY (CSV) into a bare copy of tally.events: same columns, indexes and partitions, no logic (median of ${COPY_RUNS})` },
        { name: 'record_events_batch1000', value: perSecond(EVENTS, batchMs), unit: 'events/s', baseline: 'copy_bare', target: 0.5, note: `batches of ${BATCH} over one connection` },
        { name: 'tally_import', value: perSecond(EVENTS, importMs), unit: 'events/s', baseline: 'copy_bare', target: 0.8, note: 'importFile on an NDJSON file, default options (chunks of 10,000, 2 sessions)' },
        { name: 'record_event_single', value: perSecond(SINGLE, singleMs), unit: 'events/s', baseline: 'copy_bare', note: `${SINGLE} calls, one at a time, one connection` },
        { name: 'record_event_latency_median', value: Math.round(median(latencies) * 1000), unit: 'µs', better: 'lower', note: 'per call, client-side round trip' },
        { name: 'record_event_latency_p99', value: Math.round(p99 * 1000), unit: 'µs', better: 'lower', note: 'per call, client-side round trip' },
        {
          name: `tracker_${PRODUCERS}_producers`,
          value: perSecond(EVENTS, trackerMs),
          unit: 'events/s',
          baseline: 'copy_bare',
          target: 0.5,
          note: `${PRODUCERS} UsageTrackers (batchSize ${BATCH}, one connection each) fed at once, until close() returns`,
        },
      ];
      return results;
    } finally {
      await pool.end();
      fs.rmSync(dir, { recursive: true, force: true });
      await db.drop();
    }
  },
};
