/**
 * Wire events (record_events' input) with every dimension drawn from small sets, absent
 * values included: for tests that fold them and compare the aggregates with the events.
 */
import { seededRandom } from '../../src/seeded-random.ts';

export interface RandomEventsOptions {
  /** The accounts to draw from, each with its API keys (an event names a key, or the account). */
  keys: Record<string, string[]>;
  n: number;
  seed: number;
  /** The instants (ms) from which the events are spread, and over how many days after each. */
  windows: number[];
  days: number;
}

export function randomEvents({ keys, n, seed, windows, days }: RandomEventsOptions) {
  const random = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const accounts = Object.keys(keys);
  return Array.from({ length: n }, () => {
    const account = pick(accounts);
    const key = pick([...keys[account]!, undefined]);
    const tokens = random() < 0.3;
    return {
      ...(key ? { api_key_id: key } : { account_id: account }),
      event_type: pick(['api_request', 'llm_call', 'file_upload']),
      occurred_at: new Date(pick(windows) + Math.floor(random() * days * 86_400_000)).toISOString(),
      provider: pick(['openai', 'anthropic', undefined]),
      model: pick(['m-1', 'm-2', undefined]),
      endpoint: pick(['/v1/a', '/v1/b', undefined]),
      file_type: pick(['image/png', 'text/csv', undefined]),
      status_code: pick([200, 201, 404, 503, undefined]),
      latency_ms: pick([undefined, 0, 3, Math.floor(random() * 5000), 2_000_000]),
      bytes: pick([undefined, Math.floor(random() * 10_000)]),
      files: pick([undefined, 1, 2]),
      tokens_in: tokens ? Math.floor(random() * 1000) : undefined,
      tokens_out: tokens ? Math.floor(random() * 100) : undefined,
      cost_usd: pick([undefined, '0', '0.000123', '1.5']),
      cached: random() < 0.2,
      quantity: pick([undefined, '2.5']),
    };
  });
}
