/**
 * The demo dataset of `tally demo`, generated from a fixed seed: the same anchor day always
 * gives the same events, field for field, with the same idempotency keys.
 *
 * Three accounts in three time zones, 30 days of API calls, uploads and LLM calls (a quarter
 * of them answered from a cache), busier on local working hours and weekdays, growing
 * over the month; a price table for the models; and five items the validator refuses.
 */
import { seededRandom } from '../seeded-random.ts';

export interface DemoAccount {
  externalId: string;
  name: string;
  timezone: string;
  /** Events per weekday at the start of the window, by kind. */
  perDay: { api: number; upload: number; llm: number };
}

export const DEMO_ACCOUNTS: readonly DemoAccount[] = [
  { externalId: 'demo-acme', name: 'Acme Analytics', timezone: 'America/New_York', perDay: { api: 420, upload: 60, llm: 180 } },
  { externalId: 'demo-globex', name: 'Globex Studio', timezone: 'Europe/Berlin', perDay: { api: 160, upload: 35, llm: 90 } },
  { externalId: 'demo-initech', name: 'Initech Labs', timezone: 'Asia/Tokyo', perDay: { api: 60, upload: 10, llm: 40 } },
];

export interface DemoPrice {
  provider: string;
  model: string;
  inputUsdPerMtok: string;
  outputUsdPerMtok: string;
}

/** USD per million tokens; in effect from 60 days before the anchor. */
export const DEMO_PRICES: readonly DemoPrice[] = [
  { provider: 'openai', model: 'gpt-4o', inputUsdPerMtok: '2.50', outputUsdPerMtok: '10.00' },
  { provider: 'openai', model: 'gpt-4o-mini', inputUsdPerMtok: '0.15', outputUsdPerMtok: '0.60' },
  { provider: 'anthropic', model: 'claude-sonnet-4', inputUsdPerMtok: '3.00', outputUsdPerMtok: '15.00' },
  { provider: 'anthropic', model: 'claude-3-5-haiku', inputUsdPerMtok: '0.80', outputUsdPerMtok: '4.00' },
];

export const DEMO_DAYS = 30;
const DAY_MS = 86_400_000;

/** A wire event (snake_case, as record_events takes it). */
export type WireEvent = Record<string, unknown>;


function seedOf(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Minutes the time zone is ahead of UTC at an instant. */
function offsetMinutes(timezone: string, at: Date): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: timezone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(at);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  const wall = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return Math.round((wall - Math.floor(at.getTime() / 1000) * 1000) / 60_000);
}

// Relative weight of each local hour: quiet nights, a morning and an afternoon peak.
const HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 6, 10, 14, 15, 14, 11, 13, 15, 14, 12, 9, 6, 5, 4, 3, 2, 1];
const HOUR_TOTAL = HOUR_WEIGHTS.reduce((a, b) => a + b, 0);

function pick<T>(r: () => number, items: readonly (readonly [T, number])[]): T {
  const total = items.reduce((s, [, w]) => s + w, 0);
  let x = r() * total;
  for (const [item, w] of items) {
    x -= w;
    if (x < 0) return item;
  }
  return items[items.length - 1]![0];
}

/** A whole number around `mean` with a long right tail (log-normal), at least `min`. */
function around(r: () => number, mean: number, spread = 0.6, min = 0): number {
  const u = Math.max(1e-9, r());
  const v = r();
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  return Math.max(min, Math.round(mean * Math.exp(spread * z - (spread * spread) / 2)));
}

const ENDPOINTS = [
  ['/v1/search', 'GET', 40],
  ['/v1/documents', 'POST', 15],
  ['/v1/documents/{id}', 'GET', 30],
  ['/v1/export', 'POST', 5],
  ['/v1/usage', 'GET', 10],
] as const;
const FILE_TYPES = [
  ['application/pdf', 45, 900_000],
  ['image/png', 30, 350_000],
  ['text/csv', 20, 120_000],
  ['video/mp4', 5, 25_000_000],
] as const;
const MODELS: readonly (readonly [readonly [string, string], number])[] = [
  [['openai', 'gpt-4o-mini'], 45],
  [['openai', 'gpt-4o'], 25],
  [['anthropic', 'claude-3-5-haiku'], 20],
  [['anthropic', 'claude-sonnet-4'], 10],
];

/** The UTC midnight that ends the window: the day of `at` (UTC). */
export function anchorDay(at: Date): Date {
  return new Date(Math.floor(at.getTime() / DAY_MS) * DAY_MS);
}

/** When the demo prices take effect: 60 days before the anchor, so every demo event has one. */
export function pricesEffectiveFrom(anchor: Date): Date {
  return new Date(anchor.getTime() - 60 * DAY_MS);
}

/** The events of one account over the DEMO_DAYS UTC days before `anchor`, in time order. */
export function demoEvents(account: DemoAccount, accountId: string, anchor: Date): WireEvent[] {
  const events: { at: number; event: WireEvent }[] = [];
  const windowStart = anchor.getTime() - DEMO_DAYS * DAY_MS;
  for (let day = 0; day < DEMO_DAYS; day++) {
    const r = seededRandom(seedOf(`tally-demo:${account.externalId}:${day}`));
    const dayStart = windowStart + day * DAY_MS;
    const offset = offsetMinutes(account.timezone, new Date(dayStart + DAY_MS / 2));
    const localWeekday = new Date(dayStart + DAY_MS / 2 + offset * 60_000).getUTCDay();
    const weekend = localWeekday === 0 || localWeekday === 6;
    // +30 % over the month, weekends at 35 %
    const scale = (1 + (0.3 * day) / DEMO_DAYS) * (weekend ? 0.35 : 1);
    let n = 0;
    const at = (): number => {
      // a local hour by weight, a second within it, then into this UTC day
      let x = r() * HOUR_TOTAL;
      let hour = 0;
      while (hour < 23 && (x -= HOUR_WEIGHTS[hour]!) >= 0) hour++;
      const local = hour * 3_600_000 + Math.floor(r() * 3_600_000);
      const ms = (((local - offset * 60_000) % DAY_MS) + DAY_MS) % DAY_MS;
      return dayStart + ms;
    };
    const key = () => `demo:${account.externalId}:${day}:${n++}`;

    for (let i = 0, count = around(r, account.perDay.api * scale, 0.15, 1); i < count; i++) {
      const [endpoint, method] = pick(r, ENDPOINTS.map(([e, m, w]) => [[e, m], w] as const));
      const status = pick<number>(r, [[method === 'POST' ? 201 : 200, 960], [400, 8], [404, 12], [429, 15], [500, 5]]);
      const event: WireEvent = {
        account_id: accountId,
        event_type: 'api_call',
        endpoint,
        method,
        status_code: status,
        latency_ms: around(r, endpoint === '/v1/export' ? 900 : 120, 0.7, 3),
        idempotency_key: key(),
      };
      if (status >= 500) event.error_message = 'upstream timeout';
      events.push({ at: at(), event });
    }
    for (let i = 0, count = around(r, account.perDay.upload * scale, 0.2, 0); i < count; i++) {
      const [fileType, mean] = pick(r, FILE_TYPES.map(([t, w, m]) => [[t, m], w] as const));
      const files = pick<number>(r, [[1, 80], [2, 15], [3, 5]]);
      events.push({
        at: at(),
        event: {
          account_id: accountId,
          event_type: 'file_upload',
          file_type: fileType,
          files,
          bytes: files * around(r, mean, 0.8, 1024),
          latency_ms: around(r, 400, 0.6, 10),
          idempotency_key: key(),
        },
      });
    }
    for (let i = 0, count = around(r, account.perDay.llm * scale, 0.15, 1); i < count; i++) {
      const [provider, model] = pick(r, MODELS);
      const cached = r() < 0.25;
      events.push({
        at: at(),
        event: {
          account_id: accountId,
          event_type: 'llm_call',
          provider,
          model,
          tokens_in: around(r, 1500, 0.7, 20),
          tokens_out: around(r, 350, 0.8, 5),
          cached,
          latency_ms: cached ? around(r, 40, 0.5, 2) : around(r, 1800, 0.6, 150),
          idempotency_key: key(),
        },
      });
    }
  }
  events.sort((a, b) => a.at - b.at);
  return events.map(({ at, event }) => ({ occurred_at: new Date(at).toISOString(), ...event }));
}

/**
 * Five items the validator refuses, each with its account and an idempotency key, so that
 * rejected_events keeps each of them once however often the demo runs.
 */
export function demoRefusals(accountIds: readonly string[], anchor: Date): WireEvent[] {
  const [a = '', b = a, c = b] = accountIds;
  const at = (hoursBefore: number) => new Date(anchor.getTime() - hoursBefore * 3_600_000).toISOString();
  return [
    // a typo: token_in for tokens_in
    { account_id: a, occurred_at: at(30), event_type: 'llm_call', provider: 'openai', model: 'gpt-4o', token_in: 1200, tokens_out: 80, idempotency_key: 'demo:refused:1' },
    { account_id: a, occurred_at: at(52), event_type: 'api_call', endpoint: '/v1/search', method: 'GET', status_code: 700, idempotency_key: 'demo:refused:2' },
    { account_id: b, occurred_at: at(75), event_type: 'file_upload', file_type: 'image/png', files: 1, bytes: -512, idempotency_key: 'demo:refused:3' },
    { account_id: b, occurred_at: '2099-01-01T00:00:00Z', event_type: 'api_call', endpoint: '/v1/usage', idempotency_key: 'demo:refused:4' },
    { account_id: c, occurred_at: at(100), event_type: 'LLM Call!', provider: 'anthropic', model: 'claude-sonnet-4', idempotency_key: 'demo:refused:5' },
  ];
}
