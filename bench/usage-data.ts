/**
 * Realistic usage data for the benches, from the project's seeded generator
 * (src/seeded-random.ts): the same events on every run (only the uuids of accounts and
 * keys, drawn by the database, differ; which account or key an event picks does not).
 *
 * - Tenants (createTenants): A accounts (default 1,000) through tally.create_account (about
 *   25-70 ms each: its time zone check reads pg_timezone_names), each with
 *   1 to 5 API keys through tally.create_api_key (real rows: tally.events.api_key_id has no
 *   foreign key, Citus rule, but ingestion only stores ids of keys that exist), 8 to 30 of
 *   the 40 route templates of ROUTES as its endpoints, and a time zone (UTC, New York, Paris,
 *   Kolkata in turn; the largest account is in New York). Model prices for every model of
 *   PROVIDERS are set, so ingestion prices LLM calls as it would in production.
 * - Events (UsageGenerator): accounts Zipf (s = 1: the largest has 13.4 % of the traffic
 *   with 1,000 accounts), keys and endpoints Zipf within their account, providers Zipf (each
 *   account ranks the 5 providers in its own order), models Zipf within a provider, file types
 *   Zipf over 3. The mix: 55 % api_request (endpoint, method, status_code: 93.5 % 2xx, 5 % 4xx,
 *   1.5 % 5xx), 35 % llm_call (provider, model, tokens, cost priced like ingestion does,
 *   latency; 25 % cached: cost 0, potential_cost_usd the full price; 1.5 % failed),
 *   10 % file_upload (file_type, files, bytes). 90 % name an API key. Latencies, tokens and
 *   bytes are log-normal.
 * - Time (loadEvents): over the last D days (default 90), with a daily cycle (busiest at
 *   15:00 UTC), quieter weekends and 30 % growth from the first day to the last. Either in
 *   time order (ids follow occurred_at, as live ingestion writes them) or in random order (a
 *   backfill: ids shuffled against time).
 * - Loading: COPY (text format) into tally.events, generated in chunks and streamed, after
 *   tally.ensure_partitions_for(from, to); the rows are what ingestion would store (account
 *   resolved, success derived, cost priced, cost_given false). Progress goes to the log.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { seededRandom } from '../src/seeded-random.ts';

/** 5 providers with 4 models each: [model, input USD per Mtok, output USD per Mtok] (at most 6 decimals). */
export const PROVIDERS: readonly { provider: string; models: readonly (readonly [string, number, number])[] }[] = [
  { provider: 'openai', models: [['gpt-4o-mini', 0.15, 0.6], ['gpt-4o', 2.5, 10], ['gpt-4.1', 2, 8], ['o3-mini', 1.1, 4.4]] },
  { provider: 'anthropic', models: [['claude-sonnet-4', 3, 15], ['claude-3-5-haiku', 0.8, 4], ['claude-opus-4', 15, 75], ['claude-3-7-sonnet', 3, 15]] },
  { provider: 'google', models: [['gemini-2.5-flash', 0.3, 2.5], ['gemini-2.5-pro', 1.25, 10], ['gemini-2.0-flash', 0.1, 0.4], ['gemini-1.5-pro', 1.25, 5]] },
  { provider: 'mistral', models: [['mistral-small', 0.1, 0.3], ['mistral-large', 2, 6], ['codestral', 0.3, 0.9], ['ministral-8b', 0.1, 0.1]] },
  { provider: 'cohere', models: [['command-r', 0.15, 0.6], ['command-r-plus', 2.5, 10], ['command-a', 2.5, 10], ['command-r7b', 0.0375, 0.15]] },
];

export const FILE_TYPES = ['image/png', 'application/pdf', 'text/csv'] as const;

/** 40 route templates (method, endpoint); an account serves 8 to 30 of them. */
export const ROUTES: readonly (readonly [string, string])[] = [
  ['GET', '/v1/search'], ['POST', '/v1/search'], ['GET', '/v1/documents'], ['POST', '/v1/documents'],
  ['GET', '/v1/documents/{id}'], ['PATCH', '/v1/documents/{id}'], ['DELETE', '/v1/documents/{id}'], ['GET', '/v1/users/{id}'],
  ['GET', '/v1/users'], ['POST', '/v1/users'], ['POST', '/v1/auth/token'], ['GET', '/v1/projects'],
  ['GET', '/v1/projects/{id}'], ['POST', '/v1/projects'], ['GET', '/v1/projects/{id}/members'], ['POST', '/v1/embeddings'],
  ['POST', '/v1/chat/completions'], ['POST', '/v1/completions'], ['GET', '/v1/files'], ['GET', '/v1/files/{id}'],
  ['POST', '/v1/files'], ['GET', '/v1/files/{id}/content'], ['GET', '/v1/invoices'], ['GET', '/v1/invoices/{id}'],
  ['POST', '/v1/webhooks'], ['GET', '/v1/webhooks'], ['GET', '/v1/events'], ['GET', '/v1/metrics'],
  ['GET', '/v1/health'], ['POST', '/v1/batch'], ['GET', '/v1/batch/{id}'], ['GET', '/v2/search'],
  ['POST', '/v2/query'], ['GET', '/v2/items'], ['GET', '/v2/items/{id}'], ['PUT', '/v2/items/{id}'],
  ['POST', '/v2/items'], ['GET', '/v1/settings'], ['PUT', '/v1/settings'], ['POST', '/v1/exports'],
];

const TIMEZONES = ['America/New_York', 'UTC', 'Europe/Paris', 'Asia/Kolkata'] as const;
const CLIENT_ERRORS = [400, 401, 403, 404, 404, 409, 422, 429, 429, 429] as const;
const SERVER_ERRORS = [500, 500, 502, 503, 504] as const;

export interface GeneratedAccount {
  id: string;
  timezone: string;
  /** Zipf rank, 0 = the largest. */
  rank: number;
  keys: string[];
  keyCdf: Float64Array;
  routes: (readonly [string, string])[];
  routeCdf: Float64Array;
  /** The providers (indexes into PROVIDERS) from this account's most used to its least. */
  providerOrder: number[];
}

export interface Tenants {
  accounts: GeneratedAccount[];
  accountCdf: Float64Array;
  /** The account with the most events (Zipf rank 1). */
  largest: GeneratedAccount;
}

/** Cumulative Zipf(s) weights of ranks 1..n, normalized to end at 1. */
export function zipfCdf(n: number, s: number): Float64Array {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let k = 0; k < n; k++) total += 1 / (k + 1) ** s;
  let acc = 0;
  for (let k = 0; k < n; k++) {
    acc += 1 / (k + 1) ** s / total;
    cdf[k] = acc;
  }
  cdf[n - 1] = 1;
  return cdf;
}

/** The first index whose cumulative weight exceeds u (u in [0, 1)). */
function pickIndex(cdf: Float64Array, u: number): number {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid]! > u) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

const PROVIDER_CDF = zipfCdf(PROVIDERS.length, 1);
const MODEL_CDF = zipfCdf(4, 1);
const FILE_TYPE_CDF = zipfCdf(FILE_TYPES.length, 1);

/**
 * Creates the accounts (and their keys and endpoints) and sets the model prices, effective
 * from `pricesFrom` (before the first event). Run as a service (the bench's superuser).
 */
export async function createTenants(
  pool: pg.Pool,
  options: { accounts?: number; seed?: number; pricesFrom?: Date } = {},
): Promise<Tenants> {
  const count = options.accounts ?? 1000;
  const rnd = seededRandom(options.seed ?? 1);
  const { rows: accountRows } = await pool.query<{ g: number; id: string }>(
    `select g, a.id from generate_series(1, $1::int) g
       cross join lateral tally.create_account(p_name => 'bench account ' || g, p_timezone => ($2::text[])[1 + (g - 1) % 4]) a
      order by g`,
    [count, TIMEZONES],
  );
  const keyCounts = accountRows.map((_, i) => (i < 10 ? 5 : 1 + Math.floor(rnd() * 4)));
  const { rows: keyRows } = await pool.query<{ account_id: string; id: string }>(
    `select a.id as account_id, k.id from unnest($1::uuid[], $2::int[]) with ordinality as a(id, n, ord)
       cross join lateral generate_series(1, a.n) g
       cross join lateral tally.create_api_key(p_account_id => a.id, p_name => 'key ' || g) k
      order by a.ord, g`,
    [accountRows.map((r) => r.id), keyCounts],
  );
  const keysOf = new Map<string, string[]>();
  for (const k of keyRows) keysOf.set(k.account_id, [...(keysOf.get(k.account_id) ?? []), k.id]);
  const accounts = accountRows.map((r, i): GeneratedAccount => {
    const shuffled = [...ROUTES];
    for (let j = shuffled.length - 1; j > 0; j--) {
      const s = Math.floor(rnd() * (j + 1));
      [shuffled[j], shuffled[s]] = [shuffled[s]!, shuffled[j]!];
    }
    const routes = shuffled.slice(0, 8 + Math.floor(rnd() * 23));
    const keys = keysOf.get(r.id) ?? [];
    const providerOrder = PROVIDERS.map((_, p) => p);
    const shift = i % PROVIDERS.length;
    return {
      id: r.id,
      timezone: TIMEZONES[i % TIMEZONES.length]!,
      rank: i,
      keys,
      keyCdf: zipfCdf(keys.length, 1.2),
      routes,
      routeCdf: zipfCdf(routes.length, 1),
      providerOrder: [...providerOrder.slice(shift), ...providerOrder.slice(0, shift)],
    };
  });
  const pricesFrom = options.pricesFrom ?? new Date(Date.now() - 400 * 86_400_000);
  for (const { provider, models } of PROVIDERS) {
    for (const [model, input, output] of models) {
      await pool.query(
        `select tally.set_model_price(p_provider => $1, p_model => $2, p_input_usd_per_mtok => $3::numeric,
                                      p_output_usd_per_mtok => $4::numeric, p_effective_from => $5::timestamptz)`,
        [provider, model, String(input), String(output), pricesFrom.toISOString()],
      );
    }
  }
  return { accounts, accountCdf: zipfCdf(accounts.length, 1), largest: accounts[0]! };
}

/** One event as the ledger stores it (what ingestion would have written). */
export interface GeneratedEvent {
  accountId: string;
  occurredAt: number;
  apiKeyId: string | null;
  eventType: 'api_request' | 'llm_call' | 'file_upload';
  provider: string | null;
  model: string | null;
  endpoint: string | null;
  method: string | null;
  statusCode: number | null;
  success: boolean;
  errorMessage: string | null;
  fileType: string | null;
  files: number | null;
  bytes: number | null;
  tokensIn: number | null;
  tokensOut: number | null;
  cached: boolean;
  /** Decimal strings, 12 decimals, as tally prices them (NULL for events without tokens). */
  costUsd: string | null;
  potentialCostUsd: string | null;
  latencyMs: number | null;
}

/** USD in units of 1e-12 as a decimal string with 12 decimals. */
function picoUsd(units: number): string {
  const whole = Math.floor(units / 1e12);
  return `${whole}.${String(units - whole * 1e12).padStart(12, '0')}`;
}

/** Prices of every model in millionths of a USD per Mtok, so a cost is an exact integer of 1e-12 USD. */
const MICRO_PRICES = PROVIDERS.map((p) => p.models.map(([, i, o]) => [Math.round(i * 1e6), Math.round(o * 1e6)] as const));

export class UsageGenerator {
  readonly tenants: Tenants;
  readonly rnd: () => number;

  constructor(tenants: Tenants, seed = 7) {
    this.tenants = tenants;
    this.rnd = seededRandom(seed);
  }

  private logNormal(median: number, sigma: number): number {
    const u = 1 - this.rnd();
    const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.rnd());
    return median * Math.exp(sigma * z);
  }

  /** The next event, at occurredAt (epoch ms). */
  event(occurredAt: number): GeneratedEvent {
    const rnd = this.rnd;
    const account = this.tenants.accounts[pickIndex(this.tenants.accountCdf, rnd())]!;
    const apiKeyId = account.keys.length > 0 && rnd() < 0.9 ? account.keys[pickIndex(account.keyCdf, rnd())]! : null;
    const e: GeneratedEvent = {
      accountId: account.id, occurredAt, apiKeyId, eventType: 'api_request', provider: null, model: null, endpoint: null,
      method: null, statusCode: null, success: true, errorMessage: null, fileType: null, files: null, bytes: null,
      tokensIn: null, tokensOut: null, cached: false, costUsd: null, potentialCostUsd: null, latencyMs: null,
    };
    const kind = rnd();
    if (kind < 0.55) {
      const [method, endpoint] = account.routes[pickIndex(account.routeCdf, rnd())]!;
      const r = rnd();
      const status = r < 0.935 ? (method === 'POST' ? 201 : 200) : r < 0.985 ? CLIENT_ERRORS[Math.floor(rnd() * CLIENT_ERRORS.length)]! : SERVER_ERRORS[Math.floor(rnd() * SERVER_ERRORS.length)]!;
      e.endpoint = endpoint;
      e.method = method;
      e.statusCode = status;
      e.success = status < 400;
      if (status >= 400) e.errorMessage = `HTTP ${status}`;
      e.latencyMs = Math.min(600_000, Math.round(this.logNormal(status >= 500 ? 400 : 60, 0.9)));
    } else if (kind < 0.9) {
      const p = account.providerOrder[pickIndex(PROVIDER_CDF, rnd())]!;
      const m = pickIndex(MODEL_CDF, rnd());
      const [input, output] = MICRO_PRICES[p]![m]!;
      e.eventType = 'llm_call';
      e.provider = PROVIDERS[p]!.provider;
      e.model = PROVIDERS[p]!.models[m]![0];
      e.tokensIn = Math.max(1, Math.min(200_000, Math.round(this.logNormal(600, 1))));
      e.tokensOut = Math.max(1, Math.min(16_000, Math.round(this.logNormal(200, 0.9))));
      e.cached = rnd() < 0.25;
      // as ingestion prices it: a cached call costs 0, its potential cost is the full price
      const price = picoUsd(e.tokensIn * input + e.tokensOut * output);
      e.costUsd = e.cached ? '0.000000000000' : price;
      e.potentialCostUsd = price;
      if (!e.cached && rnd() < 0.015) {
        e.success = false;
        e.errorMessage = 'provider error';
      }
      e.latencyMs = Math.min(600_000, Math.round(e.cached ? this.logNormal(25, 0.5) : this.logNormal(1200, 0.7)));
    } else {
      e.eventType = 'file_upload';
      e.fileType = FILE_TYPES[pickIndex(FILE_TYPE_CDF, rnd())]!;
      e.files = rnd() < 0.8 ? 1 : 2 + Math.floor(rnd() * 4);
      e.bytes = e.files * Math.min(1e9, Math.round(this.logNormal(300_000, 1.5)));
      e.success = rnd() >= 0.005;
      if (!e.success) e.errorMessage = 'upload failed';
      e.latencyMs = Math.min(600_000, Math.round(this.logNormal(400, 0.8)));
    }
    return e;
  }
}

/** The columns copyLine writes, in its order. */
export const COPY_COLUMNS = [
  'account_id', 'occurred_at', 'api_key_id', 'event_type', 'provider', 'model', 'endpoint', 'method', 'status_code', 'success',
  'error_message', 'file_type', 'files', 'bytes', 'tokens_in', 'tokens_out', 'cached', 'cost_usd', 'potential_cost_usd',
  'cost_given', 'potential_cost_given', 'latency_ms', 'quantity',
] as const;

const t = (v: string | number | null): string => (v === null ? '\\N' : String(v));

/** One row of COPY text format (no value holds a tab, newline or backslash). */
export function copyLine(e: GeneratedEvent): string {
  return `${e.accountId}\t${new Date(e.occurredAt).toISOString()}\t${t(e.apiKeyId)}\t${e.eventType}\t${t(e.provider)}\t${t(e.model)}\t${t(e.endpoint)}\t${t(e.method)}\t${t(e.statusCode)}\t${e.success ? 't' : 'f'}\t${t(e.errorMessage)}\t${t(e.fileType)}\t${t(e.files)}\t${t(e.bytes)}\t${t(e.tokensIn)}\t${t(e.tokensOut)}\t${e.cached ? 't' : 'f'}\t${t(e.costUsd)}\t${t(e.potentialCostUsd)}\tf\tf\t${t(e.latencyMs)}\t1\n`;
}

/** The event as an app sends it to record_events (snake_case JSON; tally prices it). */
export function wireEvent(e: GeneratedEvent): Record<string, unknown> {
  const w: Record<string, unknown> = { account_id: e.accountId, occurred_at: new Date(e.occurredAt).toISOString(), event_type: e.eventType };
  if (e.apiKeyId !== null) w.api_key_id = e.apiKeyId;
  if (e.eventType === 'api_request') Object.assign(w, { endpoint: e.endpoint, method: e.method, status_code: e.statusCode });
  if (e.eventType === 'llm_call') Object.assign(w, { provider: e.provider, model: e.model, tokens_in: e.tokensIn, tokens_out: e.tokensOut, cached: e.cached, success: e.success });
  if (e.eventType === 'file_upload') Object.assign(w, { file_type: e.fileType, files: e.files, bytes: e.bytes, success: e.success });
  if (e.errorMessage !== null) w.error_message = e.errorMessage;
  if (e.latencyMs !== null) w.latency_ms = e.latencyMs;
  return w;
}

const HOUR_MS = 3_600_000;

/** The relative traffic of the hour starting at `ms`: a daily cycle, quieter weekends, growth over the range. */
function hourWeight(ms: number, from: number, to: number): number {
  const d = new Date(ms);
  const daily = 1 + 0.6 * Math.cos((2 * Math.PI * (d.getUTCHours() - 15)) / 24);
  const weekly = d.getUTCDay() === 0 || d.getUTCDay() === 6 ? 0.6 : 1;
  return daily * weekly * (1 + (0.3 * (ms - from)) / (to - from));
}

export interface LoadOptions {
  events: number;
  /** Days of history ending at `end` (default 90). */
  days?: number;
  /** Default now. */
  end?: Date;
  /** 'time': ids follow occurred_at; 'random': a backfill, ids shuffled against time. */
  order?: 'time' | 'random';
  seed?: number;
  /** Rows per chunk handed to COPY (default 20,000). */
  chunkRows?: number;
  log?: (line: string) => void;
}

export interface LoadResult {
  events: number;
  ms: number;
  from: Date;
  to: Date;
}

/** Yields the events' COPY text in chunks: by hour in time order, or each at a random (weighted) hour. */
export function* copyChunks(tenants: Tenants, options: LoadOptions & { from: number; to: number }, onRows: (n: number) => void): Generator<Buffer> {
  const gen = new UsageGenerator(tenants, options.seed ?? 7);
  const rnd = gen.rnd;
  const { from, to, events } = options;
  const chunkRows = options.chunkRows ?? 20_000;
  const slots = Math.ceil((to - from) / HOUR_MS);
  const weights = new Float64Array(slots);
  let total = 0;
  for (let h = 0; h < slots; h++) {
    // the last slot may be shorter than an hour
    const share = Math.min(HOUR_MS, to - (from + h * HOUR_MS)) / HOUR_MS;
    weights[h] = hourWeight(from + h * HOUR_MS, from, to) * share;
    total += weights[h]!;
  }
  const slotLength = (h: number) => Math.min(HOUR_MS, to - (from + h * HOUR_MS));
  // lines are written straight into a chunk buffer: joining thousands of short strings
  // costs more than generating them
  let buffer = Buffer.allocUnsafe(chunkRows * 400);
  let used = 0;
  let rows = 0;
  const add = (line: string) => {
    used += buffer.write(line, used, 'latin1');
    rows++;
  };
  const flush = () => {
    const chunk = buffer.subarray(0, used);
    onRows(rows);
    buffer = Buffer.allocUnsafe(chunkRows * 400);
    used = 0;
    rows = 0;
    return chunk;
  };
  if ((options.order ?? 'time') === 'time') {
    let acc = 0;
    let done = 0;
    for (let h = 0; h < slots; h++) {
      acc += weights[h]!;
      const upto = h === slots - 1 ? events : Math.round((events * acc) / total);
      const n = upto - done;
      done = upto;
      const offsets = new Float64Array(n);
      for (let i = 0; i < n; i++) offsets[i] = Math.floor(rnd() * slotLength(h));
      offsets.sort();
      for (let i = 0; i < n; i++) {
        add(copyLine(gen.event(from + h * HOUR_MS + offsets[i]!)));
        if (rows >= chunkRows) yield flush();
      }
    }
  } else {
    const cdf = new Float64Array(slots);
    let acc = 0;
    for (let h = 0; h < slots; h++) cdf[h] = acc += weights[h]! / total;
    cdf[slots - 1] = 1;
    for (let i = 0; i < events; i++) {
      const h = pickIndex(cdf, rnd());
      add(copyLine(gen.event(from + h * HOUR_MS + Math.floor(rnd() * slotLength(h)))));
      if (rows >= chunkRows) yield flush();
    }
  }
  if (rows > 0) yield flush();
}

/**
 * Creates the partitions of the range and COPYs `events` generated events into tally.events
 * on one connection of `pool`, logging progress every 5 s.
 */
export async function loadEvents(pool: pg.Pool, tenants: Tenants, options: LoadOptions): Promise<LoadResult> {
  const to = (options.end ?? new Date()).getTime();
  const from = to - (options.days ?? 90) * 86_400_000;
  const log = options.log ?? (() => undefined);
  await pool.query('select tally.ensure_partitions_for(p_from => $1::timestamptz, p_to => $2::timestamptz)', [new Date(from).toISOString(), new Date(to).toISOString()]);
  const started = performance.now();
  let sent = 0;
  let lastLog = started;
  const client = await pool.connect();
  try {
    const chunks = copyChunks(tenants, { ...options, from, to }, (n) => {
      sent += n;
      const now = performance.now();
      if (now - lastLog >= 5000) {
        lastLog = now;
        log(`loading (${options.order ?? 'time'} order): ${sent.toLocaleString('en-US')} of ${options.events.toLocaleString('en-US')} events generated, ${((now - started) / 1000).toFixed(0)} s, ${Math.round(sent / ((now - started) / 1000)).toLocaleString('en-US')}/s`);
      }
    });
    await pipeline(Readable.from(chunks), client.query(copyFrom(`copy tally.events (${COPY_COLUMNS.join(', ')}) from stdin`)));
  } finally {
    client.release();
  }
  const ms = performance.now() - started;
  log(`loaded ${options.events.toLocaleString('en-US')} events in ${(ms / 1000).toFixed(1)} s (${Math.round(options.events / (ms / 1000)).toLocaleString('en-US')}/s)`);
  return { events: options.events, ms, from: new Date(from), to: new Date(to) };
}
