/**
 * `tally rollup`: fold the pending backlog now (run_rollups until done), or rebuild a range
 * from the raw events (recompute_rollups, a week at a time), with a progress bar on a
 * terminal and a line every 10 s otherwise.
 */
import cliProgress from 'cli-progress';
import { z } from 'zod';
import { connectClient } from './database.ts';

export interface RollupProgress {
  done: number;
  total: number;
  unit: 'events' | 'days';
  elapsedMs: number;
  /** Events covered so far (fold: folded; recompute: events in the recomputed range). */
  events: number;
}

export interface RollupSummary {
  mode: 'fold' | 'recompute';
  done: number;
  unit: 'events' | 'days';
  elapsedMs: number;
  /** Events folded, or (recompute) the folded events of the recomputed range. */
  events: number;
  /** Recompute only: buckets rebuilt per grain. */
  rebuilt?: { hourly: number; daily: number; monthly: number };
  watermark: number;
}

const DAY_MS = 86_400_000;
const foldResult = z.object({
  events: z.coerce.number().optional(),
  watermark: z.coerce.number().optional(),
  more: z.boolean().optional(),
  skipped: z.boolean().optional(),
  waiting_for_pids: z.array(z.number()).optional(),
});
const recomputeResult = z.object({
  rebuilt_buckets: z.object({ hourly: z.number(), daily: z.number(), monthly: z.number() }),
  watermark: z.coerce.number(),
});

const connect = (connectionString: string) => connectClient(connectionString, 'tally-rollup');

/** Folds everything pending now, in chunks; another run in progress is waited for. */
export async function foldPending(connectionString: string, chunk: number, onProgress: (p: RollupProgress) => void, signal?: AbortSignal): Promise<RollupSummary> {
  const client = await connect(connectionString);
  try {
    // the ids past the watermark: cheap (no scan of the tail), and an upper bound of the events
    const { rows } = await client.query<{ n: string }>(
      `select greatest(0, coalesce(pg_sequence_last_value(pg_get_serial_sequence('tally.events', 'id')::regclass), 0) - s.watermark) as n
         from tally.rollup_state s`,
    );
    const total = Number(rows[0]?.n ?? 0);
    const started = Date.now();
    let done = 0;
    let watermark = 0;
    while (!signal?.aborted) {
      const r = foldResult.parse((await client.query('select tally.run_rollups(p_max_events => $1::bigint) as r', [chunk])).rows[0]?.r);
      if (r.skipped || r.waiting_for_pids) {
        // another run holds the lock, or a writer is still inside the window: try again shortly
        await new Promise((resolve) => setTimeout(resolve, 500));
        continue;
      }
      done += r.events ?? 0;
      watermark = r.watermark ?? watermark;
      onProgress({ done, total: Math.max(total, done), unit: 'events', elapsedMs: Date.now() - started, events: done });
      if (!r.more) {
        // the total counted ids, some of which never became events (rolled back): now it is known
        onProgress({ done, total: done, unit: 'events', elapsedMs: Date.now() - started, events: done });
        break;
      }
    }
    return { mode: 'fold', done, unit: 'events', elapsedMs: Date.now() - started, events: done, watermark };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Rebuilds every bucket overlapping [from, to) from the raw events, a week per call. */
export async function recomputeRange(connectionString: string, from: Date, to: Date, onProgress: (p: RollupProgress) => void, signal?: AbortSignal): Promise<RollupSummary> {
  const client = await connect(connectionString);
  const started = Date.now();
  const totalDays = Math.ceil((to.getTime() - from.getTime()) / DAY_MS);
  const rebuilt = { hourly: 0, daily: 0, monthly: 0 };
  let watermark = 0;
  let done = 0;
  let events = 0;
  try {
    for (let start = from.getTime(); start < to.getTime() && !signal?.aborted; start += 7 * DAY_MS) {
      const end = Math.min(start + 7 * DAY_MS, to.getTime());
      const r = recomputeResult.parse(
        (await client.query('select tally.recompute_rollups(p_from => $1::timestamptz, p_to => $2::timestamptz) as r', [new Date(start), new Date(end)])).rows[0]?.r,
      );
      rebuilt.hourly += r.rebuilt_buckets.hourly;
      rebuilt.daily += r.rebuilt_buckets.daily;
      rebuilt.monthly += r.rebuilt_buckets.monthly;
      watermark = r.watermark;
      // for the events/s of the display: the folded, not voided events of the week (the
      // daily and monthly buckets around it are rebuilt too, so this is the least work done)
      const { rows } = await client.query<{ n: string }>(
        `select count(*) as n from tally.events e where e.occurred_at >= $1 and e.occurred_at < $2 and e.id <= $3
           and not exists (select 1 from tally.event_voids v where v.account_id = e.account_id and v.event_id = e.id)`,
        [new Date(start), new Date(end), watermark],
      );
      events += Number(rows[0]?.n ?? 0);
      done = Math.min(totalDays, Math.ceil((end - from.getTime()) / DAY_MS));
      onProgress({ done, total: totalDays, unit: 'days', elapsedMs: Date.now() - started, events });
    }
    return { mode: 'recompute', done, unit: 'days', elapsedMs: Date.now() - started, events, rebuilt, watermark };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A progress bar on a terminal, a line every 10 s otherwise. */
export function rollupProgressDisplay(stream: NodeJS.WriteStream, label: string): { update(p: RollupProgress): void; stop(): void } {
  if (stream.isTTY) {
    let bar: cliProgress.SingleBar | undefined;
    return {
      update(p) {
        const rate = Math.round(p.events / Math.max(0.001, p.elapsedMs / 1000));
        if (!bar) {
          bar = new cliProgress.SingleBar(
            { stream, clearOnComplete: true, hideCursor: true, format: `${label} {bar} {value}/{total} ${p.unit} | {rate} events/s | ETA {eta_formatted}` },
            cliProgress.Presets.shades_classic,
          );
          bar.start(p.total, 0, { rate });
        }
        bar.setTotal(p.total);
        bar.update(p.done, { rate });
      },
      stop: () => bar?.stop(),
    };
  }
  let last = 0;
  return {
    update(p) {
      if (Date.now() - last < 10_000) return;
      last = Date.now();
      const rate = Math.round(p.events / Math.max(0.001, p.elapsedMs / 1000));
      stream.write(`tally: ${label}: ${p.done} of ${p.total} ${p.unit} (${rate} events/s)\n`);
    },
    stop: () => undefined,
  };
}

export function formatRollupSummary(s: RollupSummary): string {
  const seconds = (s.elapsedMs / 1000).toFixed(1);
  if (s.mode === 'fold') {
    const rate = Math.round(s.done / Math.max(0.001, s.elapsedMs / 1000));
    return `folded ${s.done} events into the hourly, daily and monthly rollups in ${seconds} s (${rate} events/s); watermark ${s.watermark}`;
  }
  const r = s.rebuilt ?? { hourly: 0, daily: 0, monthly: 0 };
  const rate = Math.round(s.events / Math.max(0.001, s.elapsedMs / 1000));
  return `recomputed ${s.done} days (${s.events} events, ${rate} events/s) from the raw events in ${seconds} s: ${r.hourly} hourly, ${r.daily} daily, ${r.monthly} monthly buckets rebuilt; watermark ${s.watermark}`;
}
