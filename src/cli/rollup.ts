/**
 * `tally rollup`: fold the pending backlog now (run_rollups until done), or rebuild a range
 * from the raw events (recompute_rollups, a week at a time), with a progress bar on a
 * terminal and a line every 10 s otherwise.
 */
import { z } from 'zod';
import { rollupsApi } from '../client/rollups.ts';
import { connectClient } from '../database/resolve.ts';
import type { Command } from 'commander';
import { TallyError } from '../errors.ts';
import { EXIT_FAILURE, withDatabase } from './context.ts';
import { instant, parseOptions } from './options.ts';
import { progressDisplay, type ProgressDisplay } from './progress.ts';
import { withStopSignal } from './signals.ts';

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

const connect = (connectionString: string) => connectClient(connectionString, 'tally-rollup');

/** Folds everything pending now, in chunks; another run in progress is waited for. */
export async function foldPending(connectionString: string, chunk: number, onProgress: (p: RollupProgress) => void, signal?: AbortSignal): Promise<RollupSummary> {
  const client = await connect(connectionString);
  try {
    // the ids past the watermark: cheap (no scan of the tail), and an upper bound of the events
    const rollups = rollupsApi(client);
    const total = await rollups.estimatePendingEvents();
    const started = Date.now();
    let done = 0;
    let watermark = 0;
    while (!signal?.aborted) {
      const r = await rollups.runRollups({ maxEvents: chunk });
      if (r.skipped || r.waitingForPids) {
        // another run holds the lock, or a writer is still inside the window: try again shortly
        await new Promise((resolve) => setTimeout(resolve, 500));
        continue;
      }
      done += r.events;
      watermark = Number(r.watermark);
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
  const rollups = rollupsApi(client);
  try {
    for (let start = from.getTime(); start < to.getTime() && !signal?.aborted; start += 7 * DAY_MS) {
      const end = Math.min(start + 7 * DAY_MS, to.getTime());
      const r = await rollups.recomputeRollups({ from: new Date(start), to: new Date(end) });
      rebuilt.hourly += r.rebuiltBuckets.hourly;
      rebuilt.daily += r.rebuiltBuckets.daily;
      rebuilt.monthly += r.rebuiltBuckets.monthly;
      watermark = Number(r.watermark);
      // for the events/s of the display: the folded, not voided events of the week (the
      // daily and monthly buckets around it are rebuilt too, so this is the least work done)
      events += await rollups.countFoldedEvents({ from: new Date(start), to: new Date(end), upTo: r.watermark });
      done = Math.min(totalDays, Math.ceil((end - from.getTime()) / DAY_MS));
      onProgress({ done, total: totalDays, unit: 'days', elapsedMs: Date.now() - started, events });
    }
    return { mode: 'recompute', done, unit: 'days', elapsedMs: Date.now() - started, events, rebuilt, watermark };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A progress bar on a terminal, a line every 10 s otherwise. */
export function rollupProgressDisplay(stream: NodeJS.WriteStream, label: string): ProgressDisplay<RollupProgress> {
  const rate = (p: RollupProgress) => Math.round(p.events / Math.max(0.001, p.elapsedMs / 1000));
  return progressDisplay<RollupProgress>({
    stream,
    format: (p) => `${label} {bar} {value}/{total} ${p.unit} | {rate} events/s | ETA {eta_formatted}`,
    bar: (p) => ({ value: p.done, total: p.total, payload: { rate: rate(p) } }),
    line: (p) => `tally: ${label}: ${p.done} of ${p.total} ${p.unit} (${rate(p)} events/s)`,
  });
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

const rollupOptions = z
  .strictObject({
    from: instant().optional(),
    to: instant().optional(),
    recompute: z.boolean().optional(),
    chunk: z
      .string()
      .regex(/^\d+$/, 'must be a whole number of events')
      .transform(Number)
      .pipe(z.number().min(1000, 'must be at least 1000').max(100_000_000, 'must be at most 100000000'))
      .default(500_000),
    json: z.boolean().optional(),
    progress: z.boolean().default(true),
  })
  .refine((o) => o.recompute || (o.from === undefined && o.to === undefined), { message: 'only with --recompute (folding takes what is pending)', path: ['from'] })
  .transform((o) => {
    const to = o.to ?? new Date();
    return { ...o, to, from: o.from ?? new Date(to.getTime() - 7 * 86_400_000) };
  })
  .refine((o) => o.from < o.to, { message: 'must be earlier than --to', path: ['from'] });

export function registerRollup(program: Command): void {
  program
    .command('rollup')
    .description('fold the pending events into the rollups now, or with --recompute rebuild a range from the raw events')
    .option('--recompute', 'rebuild every bucket overlapping --from..--to from the raw events (after a reprice, a void or a fix)')
    .option('--from <time>', 'with --recompute: start of the range, ISO 8601 with offset (default: 7 days before --to)')
    .option('--to <time>', 'with --recompute: end of the range, exclusive (default: now)')
    .option('--chunk <events>', 'events per run_rollups call when folding (default 500000)')
    .option('--json', 'print the summary as JSON')
    .option('--no-progress', 'print no progress on stderr')
    .addHelpText(
      'after',
      '\nWithout --recompute it calls tally.run_rollups until nothing is pending (the worker does the same every\n' +
        'rollups.interval; running both is safe: runs never overlap). With --recompute it calls\n' +
        'tally.recompute_rollups a week at a time. Progress: events (or days) done, per second, ETA.\n' +
        'Exit codes: 0 done, 1 failed or stopped by Ctrl-C (finished chunks are kept), 2 bad usage.',
    )
    .action(async (raw) => {
      const options = parseOptions(rollupOptions, raw);
      await withDatabase({ schema: true }, (db) =>
        withStopSignal(
          async (signal) => {
            const progress = options.progress ? rollupProgressDisplay(process.stderr, options.recompute ? 'recomputing' : 'folding') : undefined;
            try {
              const summary = options.recompute
                ? await recomputeRange(db.connectionString, options.from, options.to, (p) => progress?.update(p), signal)
                : await foldPending(db.connectionString, options.chunk, (p) => progress?.update(p), signal);
              progress?.stop();
              process.stdout.write(options.json ? JSON.stringify(summary, null, 2) + '\n' : formatRollupSummary(summary) + '\n');
              if (signal.aborted) throw new TallyError('rollup_stopped', 'stopped before the end; the finished chunks are kept');
            } finally {
              progress?.stop();
            }
          },
          { exitCode: EXIT_FAILURE },
        ),
      );
    });
}
