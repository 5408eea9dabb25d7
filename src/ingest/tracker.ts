/**
 * UsageTracker: usage events off the request path. `track()` only serialises the event
 * into an in-memory queue (zero round trips); batches go to tally.record_events every
 * `flushIntervalMs` or as soon as `batchSize` events wait.
 *
 * Exactly once: every event gets an idempotency key (crypto.randomUUID()) in track(),
 * before it is first sent, and a batch is always re-sent byte for byte. So when a
 * connection dies after the server committed but before the reply arrived, the retry's
 * events come back as duplicates of themselves and nothing is counted twice.
 *
 * Counters (stats()), with tracked = queued + inFlight + sent + conflicts + rejected + dropped + failed:
 *   sent        events the ledger confirmed it holds: accepted + duplicates
 *   accepted    stored by the call that confirmed them
 *   duplicates  the ledger already had their idempotency key with the same payload: either the
 *               app tracked the same event twice, or an earlier attempt of the same batch
 *               committed and its reply was lost (the two cannot be told apart from the reply)
 *   conflicts   the ledger already had their idempotency key with a different payload (the app
 *               reused a key): the first event is kept, these are not stored; each is reported
 *               to onRejected with code idempotency_conflict and kept in tally.rejected_events
 *   rejected    refused by the validator (each reported to onRejected, kept in tally.rejected_events)
 *               or unserialisable on the client (reported to onRejected only)
 *   dropped     never sent: queue overflow, or still queued when close() timed out (onDropped)
 *   failed      in batches given up on: a non-transient error, retries exhausted, or still in
 *               flight when close() timed out (onError; those may or may not be stored, and
 *               re-sending them with their idempotency keys is safe)
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { z } from 'zod';
import { createTally, type Tally } from '../client/client.ts';
import { recordEventsJson, toWireEvent, type UsageEvent } from '../client/events.ts';
import { parseInput } from '../client/sql.ts';
import type { IngestResult } from '../client/schemas.ts';
import { TallyError } from '../errors.ts';
import { BatchTooLargeError, DatabaseError, toTallyError } from '../client/errors.ts';

/** An event as it was sent: snake_case, with its idempotency_key (and occurred_at when stamped). */
export type SentEvent = Record<string, unknown>;

export interface TrackerRejection {
  /** The event as sent (snake_case); for one that could not be serialised, the object given to track(). */
  event: SentEvent;
  /** The validator's stable code (out_of_range, account_not_found, ...), or idempotency_conflict for a key reused with another payload. */
  code: string;
  message: string;
}

export interface TrackerDrop {
  reason: 'overflow' | 'close_timeout';
  events: SentEvent[];
}

export interface TrackerFailure {
  reason: 'non_transient' | 'retries_exhausted' | 'close_timeout';
  error: TallyError;
  events: SentEvent[];
  attempts: number;
}

export interface TrackerStats {
  tracked: number;
  queued: number;
  inFlight: number;
  sent: number;
  accepted: number;
  duplicates: number;
  conflicts: number;
  rejected: number;
  dropped: number;
  failed: number;
  retries: number;
  batches: number;
  failedBatches: number;
}

export type OverflowPolicy = 'drop-newest' | 'drop-oldest' | 'throw';

export interface UsageTrackerOptions {
  /** Send what is queued at least this often (default 1000 ms). */
  flushIntervalMs?: number;
  /** Events per record_events call, 1-10000 (default 1000); a batch is sent as soon as this many wait. */
  batchSize?: number;
  /** Most events waiting in memory (default 100000). */
  maxQueue?: number;
  /** What track() does when the queue is full (default 'drop-newest'). */
  overflow?: OverflowPolicy;
  /** record_events calls in flight at once, 1-16 (default 1). */
  concurrency?: number;
  /** Retries of one batch after transient failures (default unlimited, bounded by maxRetryMs). */
  maxRetries?: number;
  /** How long one batch keeps being retried, from its first attempt (default 120000 ms). */
  maxRetryMs?: number;
  /** First backoff delay (default 100 ms); doubles per attempt, with jitter, up to retryMaxDelayMs. */
  retryBaseMs?: number;
  retryMaxDelayMs?: number;
  /** How long close() waits for the queue and the retries to drain (default 30000 ms). */
  closeTimeoutMs?: number;
  /** Stamp occurred_at with the time of track() when the event has none (default true). */
  stampOccurredAt?: boolean;
  onRejected?: (rejections: TrackerRejection[]) => void;
  onDropped?: (drop: TrackerDrop) => void;
  onError?: (failure: TrackerFailure) => void;
}

export type TrackerSource = Tally | pg.Pool | { connectionString: string; applicationName?: string; max?: number };

/** track() with overflow: 'throw' on a full queue. */
export class QueueFullError extends TallyError {
  constructor(maxQueue: number) {
    super('queue_full', `UsageTracker: the queue holds its maximum of ${maxQueue} events`);
    this.name = 'QueueFullError';
  }
}

const optionsSchema = z.strictObject({
  flushIntervalMs: z.number().int().min(1).default(1000),
  batchSize: z.number().int().min(1).max(10_000).default(1000),
  maxQueue: z.number().int().min(1).default(100_000),
  overflow: z.enum(['drop-newest', 'drop-oldest', 'throw']).default('drop-newest'),
  concurrency: z.number().int().min(1).max(16).default(1),
  maxRetries: z.union([z.number().int().min(0), z.literal(Number.POSITIVE_INFINITY)]).default(Number.POSITIVE_INFINITY),
  maxRetryMs: z.number().min(0).default(120_000),
  retryBaseMs: z.number().min(1).default(100),
  retryMaxDelayMs: z.number().min(1).default(5_000),
  closeTimeoutMs: z.number().min(0).default(30_000),
  stampOccurredAt: z.boolean().default(true),
  onRejected: z.custom<(r: TrackerRejection[]) => void>((v) => typeof v === 'function').optional(),
  onDropped: z.custom<(d: TrackerDrop) => void>((v) => typeof v === 'function').optional(),
  onError: z.custom<(f: TrackerFailure) => void>((v) => typeof v === 'function').optional(),
});
type Options = z.output<typeof optionsSchema>;

interface Entry {
  seq: number;
  json: string;
}

interface Batch {
  minSeq: number;
  startedAt: number;
  attempts: number;
  /** Parts not yet settled: the one being sent and the halves waiting after a split. */
  parts: Entry[][];
  abandoned: boolean;
}

interface Sleep {
  timer: NodeJS.Timeout;
  wake: () => void;
}

const parseEvent = (e: Entry): SentEvent => JSON.parse(e.json) as SentEvent;

// Errors worth splitting the batch for: too many items for the server's current limit, or
// one item the server cannot even parse as jsonb (e.g. "\u0000" in a string) poisoning its siblings.
function splittable(err: TallyError): boolean {
  if (err instanceof BatchTooLargeError) return true;
  return err instanceof DatabaseError && !err.transient && /^(22|54)/.test(err.sqlstate ?? '');
}

export class UsageTracker {
  readonly #tally: Tally;
  readonly #ownsTally: boolean;
  readonly #o: Options;
  readonly #timer: NodeJS.Timeout;

  // the queue: entries[head..] in seq order
  #entries: Entry[] = [];
  #head = 0;
  #lastSeq = 0;
  #drainThrough = 0;
  #batchLimit: number;
  #pumpScheduled = false;

  readonly #active = new Set<Batch>();
  readonly #sleeps = new Set<Sleep>();
  #settleWaiters: Array<() => void> = [];
  #holders = 0;

  #closed = false;
  #closing: Promise<TrackerStats> | undefined;

  readonly #counters = { tracked: 0, inFlight: 0, sent: 0, accepted: 0, duplicates: 0, conflicts: 0, rejected: 0, dropped: 0, failed: 0, retries: 0, batches: 0, failedBatches: 0 };

  // reports coalesced per tick, so overload does not call back once per event
  #pendingRejections: TrackerRejection[] = [];
  #pendingDrops: Entry[] = [];
  #reportScheduled = false;

  constructor(source: TrackerSource, options: UsageTrackerOptions = {}) {
    this.#o = parseInput('UsageTracker', optionsSchema, options);
    this.#batchLimit = this.#o.batchSize;
    if ('recordEvents' in source && 'pool' in source) {
      this.#tally = source;
      this.#ownsTally = false;
    } else if (source instanceof pg.Pool) {
      this.#tally = createTally({ pool: source });
      this.#ownsTally = false;
    } else {
      const s = source as { connectionString: string; applicationName?: string; max?: number };
      this.#tally = createTally({ connectionString: s.connectionString, applicationName: s.applicationName ?? 'tally-tracker', max: s.max ?? this.#o.concurrency + 1 });
      this.#ownsTally = true;
    }
    this.#timer = setInterval(() => {
      this.#drainThrough = this.#lastSeq;
      this.#pump();
    }, this.#o.flushIntervalMs);
    this.#timer.unref();
  }

  /**
   * Queues one event and returns its idempotency key. Never waits and never throws for
   * the event's content (the database validates it; refusals reach onRejected). Throws
   * after close(), and with overflow 'throw' when the queue is full.
   */
  track(event: UsageEvent): string {
    if (this.#closed) throw new TallyError('tracker_closed', 'UsageTracker: track() after close()');
    this.#counters.tracked++;
    const seq = ++this.#lastSeq;

    let wire: Record<string, unknown>;
    let json: string;
    try {
      if (typeof event !== 'object' || event === null || Array.isArray(event)) throw new TypeError(`an event must be an object (got ${event === null ? 'null' : typeof event})`);
      wire = toWireEvent(event);
      wire.idempotency_key ??= randomUUID();
      if (this.#o.stampOccurredAt) wire.occurred_at ??= new Date().toISOString();
      json = JSON.stringify(wire);
    } catch (err) {
      // not serialisable (a cycle, a BigInt in properties): refused here, reported like any refusal
      this.#counters.rejected++;
      this.#pendingRejections.push({ event: event as unknown as SentEvent, code: 'invalid_event', message: `event: cannot be serialised as JSON (${(err as Error).message})` });
      this.#scheduleReport();
      return '';
    }
    const key = String(wire.idempotency_key);
    const entry: Entry = { seq, json };

    if (this.#queued() >= this.#o.maxQueue) {
      this.#counters.dropped++;
      if (this.#o.overflow === 'throw') throw new QueueFullError(this.#o.maxQueue);
      if (this.#o.overflow === 'drop-newest') {
        this.#pendingDrops.push(entry);
        this.#scheduleReport();
        return key;
      }
      // drop-oldest: make room by giving up the longest-waiting event
      const oldest = this.#entries[this.#head++];
      if (oldest) this.#pendingDrops.push(oldest);
      this.#compact();
      this.#scheduleReport();
    }
    this.#entries.push(entry);
    if (this.#queued() >= this.#batchLimit) this.#schedulePump();
    return key;
  }

  /** Sends everything tracked so far and resolves once each of those events is settled (sent, rejected or failed). Never rejects. */
  async flush(): Promise<void> {
    const target = this.#lastSeq;
    this.#drainThrough = Math.max(this.#drainThrough, target);
    this.#pump();
    this.#hold(+1);
    try {
      while (this.#unsettledThrough(target)) await this.#nextSettle();
    } finally {
      this.#hold(-1);
    }
    this.#flushReports();
  }

  /**
   * Stops the timer, sends everything queued and waits for the batches in flight and
   * their retries, up to `timeoutMs` (default option closeTimeoutMs). What is left then is
   * reported: queued events to onDropped, batches in flight to onError (reason
   * close_timeout). Resolves with the final stats; track() throws afterwards.
   */
  close(options: { timeoutMs?: number } = {}): Promise<TrackerStats> {
    this.#closing ??= this.#close(options.timeoutMs ?? this.#o.closeTimeoutMs);
    return this.#closing;
  }

  stats(): TrackerStats {
    return { ...this.#counters, queued: this.#queued() };
  }

  async #close(timeoutMs: number): Promise<TrackerStats> {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#hold(+1); // for good: from now on the app is waiting for us

    let deadline: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.flush().then(() => false),
      new Promise<boolean>((resolve) => {
        deadline = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(deadline);

    if (timedOut) {
      const left = this.#entries.slice(this.#head);
      this.#entries = [];
      this.#head = 0;
      this.#counters.dropped += left.length;
      if (left.length > 0) this.#report(() => this.#onDropped({ reason: 'close_timeout', events: left.map(parseEvent) }));
      for (const batch of this.#active) {
        batch.abandoned = true;
        const entries = batch.parts.flat();
        this.#settle(entries.length);
        this.#counters.failed += entries.length;
        this.#counters.failedBatches++;
        const error = new TallyError('close_timeout', `UsageTracker: close() timed out after ${timeoutMs} ms with this batch in flight; it may or may not be stored`);
        this.#report(() => this.#onError({ reason: 'close_timeout', error, events: entries.map(parseEvent), attempts: batch.attempts }));
      }
      this.#active.clear();
      for (const s of [...this.#sleeps]) s.wake();
      this.#notifySettled();
    }
    this.#flushReports();
    if (this.#ownsTally) {
      // after a timeout a stuck query must not hold close() hostage
      const ended = this.#tally.close().catch(() => undefined);
      if (!timedOut) await ended;
    }
    return this.stats();
  }

  // ---- sending ------------------------------------------------------------------------

  #queued(): number {
    return this.#entries.length - this.#head;
  }

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  /** Starts batches while a slot is free and a full batch (or one asked for by a flush) waits. */
  #pump(): void {
    while (this.#active.size < this.#o.concurrency && this.#queued() > 0) {
      const first = this.#entries[this.#head];
      if (this.#queued() < this.#batchLimit && first && first.seq > this.#drainThrough) break;
      const entries = this.#entries.slice(this.#head, this.#head + this.#batchLimit);
      this.#head += entries.length;
      this.#compact();
      this.#start(entries);
    }
  }

  /** Forgets the entries before head once they are most of the array (amortised O(1) per event). */
  #compact(): void {
    if (this.#head === this.#entries.length) {
      this.#entries = [];
      this.#head = 0;
    } else if (this.#head > 4096 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  #start(entries: Entry[]): void {
    const batch: Batch = { minSeq: entries[0]?.seq ?? 0, startedAt: Date.now(), attempts: 0, parts: [entries], abandoned: false };
    this.#active.add(batch);
    this.#counters.inFlight += entries.length;
    void this.#send(batch)
      .catch((err: unknown) => this.#warn(`UsageTracker: internal error while sending a batch: ${String(err)}`))
      .finally(() => {
        if (this.#active.delete(batch) || batch.abandoned) this.#notifySettled();
        this.#pump();
      });
  }

  async #send(batch: Batch): Promise<void> {
    while (batch.parts.length > 0 && !batch.abandoned) {
      const part = batch.parts[0] as Entry[];
      const outcome = await this.#sendWithRetries(batch, part);
      if (batch.abandoned) return; // close() timed out and already reported this batch
      batch.parts.shift();
      if (outcome.ok) {
        this.#accept(part, outcome.result);
      } else if (splittable(outcome.error) && part.length > 1) {
        const half = Math.ceil(part.length / 2);
        if (outcome.error instanceof BatchTooLargeError) this.#batchLimit = Math.min(this.#batchLimit, half);
        batch.parts.unshift(part.slice(0, half), part.slice(half));
      } else if (splittable(outcome.error)) {
        // one event the server cannot take at all: refused on its own, siblings unaffected
        this.#settle(1);
        this.#counters.rejected++;
        this.#pendingRejections.push({ event: parseEvent(part[0] as Entry), code: 'invalid_event', message: outcome.error.message });
        this.#scheduleReport();
      } else {
        this.#settle(part.length);
        this.#counters.failed += part.length;
        this.#counters.failedBatches++;
        const { error, reason } = outcome;
        this.#report(() => this.#onError({ reason, error, events: part.map(parseEvent), attempts: batch.attempts }));
      }
    }
  }

  async #sendWithRetries(
    batch: Batch,
    part: Entry[],
  ): Promise<{ ok: true; result: IngestResult } | { ok: false; error: TallyError; reason: 'non_transient' | 'retries_exhausted' }> {
    // the same bytes on every attempt: same events, same idempotency keys
    const json = `[${part.map((e) => e.json).join(',')}]`;
    for (let retry = 0; ; retry++) {
      batch.attempts++;
      try {
        return { ok: true, result: await recordEventsJson(this.#tally.pool, json) };
      } catch (err) {
        const error = toTallyError(err);
        if (!(error instanceof DatabaseError && error.transient)) return { ok: false, error, reason: 'non_transient' };
        const cap = Math.min(this.#o.retryMaxDelayMs, this.#o.retryBaseMs * 2 ** Math.min(retry, 30));
        const delay = cap / 2 + Math.random() * (cap / 2);
        if (retry >= this.#o.maxRetries || Date.now() + delay - batch.startedAt > this.#o.maxRetryMs || batch.abandoned) {
          return { ok: false, error, reason: 'retries_exhausted' };
        }
        this.#counters.retries++;
        await this.#sleep(delay);
        if (batch.abandoned) return { ok: false, error, reason: 'retries_exhausted' };
      }
    }
  }

  #accept(part: Entry[], result: IngestResult): void {
    this.#settle(part.length);
    this.#counters.batches++;
    this.#counters.accepted += result.accepted;
    this.#counters.duplicates += result.duplicates;
    this.#counters.sent += result.accepted + result.duplicates;
    this.#counters.conflicts += result.conflicts.length;
    this.#counters.rejected += result.rejected.length;
    if (result.rejected.length > 0 || result.conflicts.length > 0) {
      for (const r of [...result.rejected, ...result.conflicts]) {
        const entry = part[r.index];
        this.#pendingRejections.push({ event: entry ? parseEvent(entry) : {}, code: r.code, message: r.message });
      }
      this.#scheduleReport();
    }
  }

  #settle(n: number): void {
    this.#counters.inFlight -= n;
  }

  #unsettledThrough(seq: number): boolean {
    const first = this.#entries[this.#head];
    if (first && first.seq <= seq) return true;
    for (const b of this.#active) if (b.minSeq <= seq) return true;
    return false;
  }

  #nextSettle(): Promise<void> {
    return new Promise((resolve) => this.#settleWaiters.push(resolve));
  }

  #notifySettled(): void {
    const waiters = this.#settleWaiters;
    this.#settleWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Backoff timers do not keep the process alive, except while someone awaits flush() or
   * close(): then the app is waiting for the retries, and must not exit under them.
   */
  #hold(delta: number): void {
    this.#holders += delta;
    for (const s of this.#sleeps) {
      if (this.#holders > 0) s.timer.ref();
      else s.timer.unref();
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const sleep: Sleep = {
        timer: setTimeout(() => sleep.wake(), ms),
        wake: () => {
          clearTimeout(sleep.timer);
          this.#sleeps.delete(sleep);
          resolve();
        },
      };
      if (this.#holders === 0) sleep.timer.unref();
      this.#sleeps.add(sleep);
    });
  }

  // ---- reporting ----------------------------------------------------------------------

  #scheduleReport(): void {
    if (this.#reportScheduled) return;
    this.#reportScheduled = true;
    setImmediate(() => this.#flushReports());
  }

  #flushReports(): void {
    this.#reportScheduled = false;
    if (this.#pendingRejections.length > 0) {
      const rejections = this.#pendingRejections;
      this.#pendingRejections = [];
      this.#report(() => this.#onRejected(rejections));
    }
    if (this.#pendingDrops.length > 0) {
      const drops = this.#pendingDrops;
      this.#pendingDrops = [];
      this.#report(() => this.#onDropped({ reason: 'overflow', events: drops.map(parseEvent) }));
    }
  }

  /** Runs a callback; one that throws must not break the tracker, and is not silenced either. */
  #report(call: () => void): void {
    try {
      call();
    } catch (err) {
      this.#warn(`UsageTracker: a callback threw: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  #onRejected(rejections: TrackerRejection[]): void {
    if (this.#o.onRejected) return this.#o.onRejected(rejections);
    const codes = [...new Set(rejections.map((r) => r.code))].join(', ');
    this.#warn(`UsageTracker: ${rejections.length} event(s) rejected (${codes}); see tally.rejected_events or pass onRejected`);
  }

  #onDropped(drop: TrackerDrop): void {
    if (this.#o.onDropped) return this.#o.onDropped(drop);
    this.#warn(`UsageTracker: ${drop.events.length} event(s) dropped (${drop.reason}); pass onDropped to keep them`);
  }

  #onError(failure: TrackerFailure): void {
    if (this.#o.onError) return this.#o.onError(failure);
    this.#warn(`UsageTracker: a batch of ${failure.events.length} event(s) failed (${failure.reason}): ${failure.error.message}; pass onError to keep them`);
  }

  #warn(message: string): void {
    process.emitWarning(message, { code: 'TALLY_TRACKER' });
  }
}
