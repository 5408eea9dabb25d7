/**
 * Bulk import of events from NDJSON or CSV (`tally import`). The file streams through
 * COPY into a session-private staging table, one chunk of rows at a time; each chunk is
 * then validated and stored by one call of tally.import_events built entirely in SQL, so
 * rows never travel back through Node. Validation is CPU-bound in the database, so chunks
 * alternate between a few sessions (`jobs`): one validates while the next one loads.
 * Every chunk commits on its own: an import that is killed keeps its finished chunks, and
 * a re-run skips the rows whose idempotency key is already stored. A chunk is committed
 * when it holds chunkSize rows, at the end of the input, and also once the import has
 * waited commitIntervalMs in all for input while it held rows (a slow pipe is stored as
 * it comes, not at 10,000 rows). Before a chunk is stored, the monthly partitions its rows
 * need are created (tally.ensure_partitions_for), so history does not wait in the default
 * partition.
 *
 * Row numbers: item_index in tally.rejected_events is the line number of the row. NDJSON:
 * the physical line (1-based; blank lines are skipped but counted). CSV: the row number a
 * spreadsheet shows, the header being row 1 (equal to the line number unless a quoted
 * field spans lines).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { z } from 'zod';
import { TallyError, UsageError } from '../errors.ts';
import { ingestResult } from '../client/schemas.ts';
import {
  BOOLEAN_FIELDS,
  CsvPreparer,
  JSON_FIELD,
  NL,
  checkCsvHeader,
  formatFromPath,
  prepareNdjson,
  sniffFormat,
  type ImportFormat,
  type Prepared,
} from './import-input.ts';

export { checkCsvHeader, formatFromPath, type ImportFormat } from './import-input.ts';

/** Rows per chunk by default: the default of the setting ingest.max_batch. */
export const DEFAULT_CHUNK_SIZE = 10_000;
/** Sessions validating chunks at once by default: validation is CPU-bound in the database,
 * so a second session keeps a second core busy while the first one's chunk is checked. */
export const DEFAULT_JOBS = 2;
/** How long staged rows may wait for more input before they are committed, by default. */
export const DEFAULT_COMMIT_INTERVAL_MS = 1000;

export interface ImportProgress {
  /** Bytes of the input read so far, and the input's size when known (a file). */
  bytesRead: number;
  totalBytes: number | undefined;
  /** Rows validated so far (blank lines and empty CSV rows are not rows). */
  rows: number;
  accepted: number;
  duplicates: number;
  conflicts: number;
  rejected: number;
  elapsedMs: number;
}

export interface ImportRejection {
  /** item_index in tally.rejected_events: the line (NDJSON) or spreadsheet row (CSV). */
  line: number;
  code: string;
  message: string;
}

export interface ImportSummary {
  /** The path given, or '-' for stdin, or 'stream'. */
  file: string;
  format: ImportFormat;
  /** tally.rejected_events.source of this run's rejected rows: 'import:<label>'. */
  source: string;
  rows: number;
  /** Blank lines (NDJSON) or rows with every cell empty (CSV), skipped (in the chunks that were stored). */
  skipped: number;
  accepted: number;
  /** Valid rows whose idempotency key was already stored (or repeated in the file) with the same payload. */
  duplicates: number;
  /** Rows whose idempotency key was already stored with a different payload: not stored (the first event is kept), kept in tally.rejected_events as idempotency_conflict. */
  conflicts: number;
  rejected: number;
  /**
   * Lines (NDJSON) or rows (CSV), blank ones included, that were read but not stored because
   * the import stopped or failed before their chunk committed; a re-run imports them.
   */
  notStored: number;
  /** Rows that are JSON objects without an idempotency_key: a re-run of the same file would store the valid ones again. */
  withoutKey: number;
  /** The first rejected rows (at most 10), in line order. */
  firstRejections: ImportRejection[];
  /** The first conflicting rows (at most 10), in line order; the message names the stored event. */
  firstConflicts: ImportRejection[];
  /** SQL that lists every rejected row of this run. */
  rejectedQuery: string;
  bytes: number;
  elapsedMs: number;
  rowsPerSecond: number;
  /** False when options.signal stopped the import early (the finished chunks are kept). */
  complete: boolean;
}

export interface ImportOptions {
  /** Where to import: a pool (`jobs` connections are held for the whole import) or a client. */
  pool?: pg.Pool;
  /** A connected client outside any transaction (each chunk must commit on its own). */
  client?: pg.ClientBase;
  /** A file path, or '-' for stdin. */
  path?: string;
  /** Or any readable byte stream. */
  stream?: Readable;
  /** Default: from the file extension (.ndjson .jsonl .json → ndjson, .csv → csv), else sniffed. */
  format?: ImportFormat;
  /** Rows per chunk (one import_events call, one transaction); default 10,000, at most ingest.max_batch. */
  chunkSize?: number;
  /** Commit the staged rows once the input has kept them waiting this long in all (default 1000 ms). */
  commitIntervalMs?: number;
  /** Sessions validating chunks at once, taken from the pool (default 2, at most the pool's max); 1 with a client. */
  jobs?: number;
  /** Label of this run; rejected rows are kept under source 'import:<label>'. Default `<file name>@<UTC time>-<4 hex>`. */
  source?: string;
  onProgress?: (progress: ImportProgress) => void;
  /** Stops after the chunks in flight (they are kept); the summary then says complete: false. */
  signal?: AbortSignal;
}

const MAX_REJECTIONS_KEPT = 10;

const STAGING = 'pg_temp.tally_import_rows';
const TRY_JSONB = 'pg_temp.tally_import_try_jsonb';

export function defaultSourceLabel(name: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${name}@${stamp}-${randomBytes(2).toString('hex')}`;
}

const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;
const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

export function rejectedQuery(source: string): string {
  return `select item_index as line, code, message, payload from tally.rejected_events where source = ${literal(source)} order by item_index;`;
}

// ---------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------

/** text → jsonb, NULL instead of an error: the per-row fallback when a chunk holds bad JSON. */
const CREATE_TRY_JSONB = `
  CREATE OR REPLACE FUNCTION ${TRY_JSONB}(p_text text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    AS $$
  BEGIN
    RETURN p_text::jsonb;
  EXCEPTION WHEN invalid_text_representation OR untranslatable_character OR statement_too_complex THEN
    RETURN NULL;
  END
  $$`;

/** SQLSTATEs of text that is not jsonb: the fast path then redoes the chunk row by row. */
const BAD_JSON_SQLSTATES = new Set(['22P02', '22P05', '54001']);

interface Staging {
  create: string;
  copy: string;
  /** Creates the partitions the staged rows' occurred_at need (none when the rows carry no occurred_at column). */
  partitions: string | undefined;
  /** The chunk statement: $1 source label, $2 item_index of staged row 0 (rows are numbered from 1 per chunk). */
  chunk: (safe: boolean) => string;
}

function chunkStatement(rows: string, item: string, bad: string, nonBlank: string): string {
  // Items keep their line numbers; import_events numbers a batch contiguously from
  // p_first_index, so a chunk with skipped lines is sent as one batch per run of lines.
  return `
    with src as ${bad === 'false' ? '' : 'materialized '}(
      select ${rows} from ${STAGING} s where ${nonBlank}
    ), items as (
      select s.n + $2::bigint as line, ${item} as e, ${bad} as bad from src s
    ), runs as (
      select i.*, i.line - row_number() over (order by i.line) as run from items i
    )
    select tally.import_events(p_events => jsonb_agg(r.e order by r.line), p_source => $1::text, p_first_index => min(r.line)) as result,
           (count(*) filter (where jsonb_typeof(r.e) = 'object' and r.e->>'idempotency_key' is null))::int as without_key,
           coalesce(array_agg(r.line) filter (where r.bad), '{}') as bad_lines
    from runs r group by r.run`;
}

/**
 * Creates the partitions of the chunk's date range (widened by a day each way: a date is
 * written in its own UTC offset) before it is stored. Dates outside 1970-2999 are left
 * out; an impossible one (2026-02-31) fails the cast, and that chunk simply gets none.
 */
function partitionsStatement(day: string): string {
  return `
    select tally.ensure_partitions_for(p_from => (d.lo::date - 1)::timestamptz, p_to => (d.hi::date + 2)::timestamptz) as r
    from (select min(t.day) as lo, max(t.day) as hi
          from (select ${day} collate "C" as day from ${STAGING} s) t
          where t.day between '1970-01-01' and '2999-12-31') d
    where d.lo is not null`;
}

/** Lock timeout, deadlock, an impossible date: creating partitions is an optimisation; the
 * rows then go to the default partition as before (ensure_partitions moves them later). */
const PARTITION_SKIP_SQLSTATES = new Set(['55P03', '40P01', '22007', '22008']);

function ndjsonStaging(): Staging {
  return {
    create: `CREATE TEMP TABLE tally_import_rows (n bigint GENERATED ALWAYS AS IDENTITY, line text)`,
    copy: `COPY ${STAGING} (line) FROM STDIN WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')`,
    // the date of occurred_at, read off the text without parsing the JSON or a regex over
    // the line (cheap per row; a miss only means that row waits in the default partition)
    partitions: partitionsStatement(
      `case when strpos(s.line, '"occurred_at"') > 0 then left(ltrim(substr(s.line, strpos(s.line, '"occurred_at"') + 13, 40), e' \\t:"'), 10) end`,
    ),
    chunk: (safe) =>
      chunkStatement(
        safe ? `s.n, s.line, ${TRY_JSONB}(s.line) as parsed` : 's.n, s.line',
        safe ? 'coalesce(s.parsed, to_jsonb(s.line))' : 's.line::jsonb',
        safe ? 's.parsed is null' : 'false',
        `btrim(s.line, e' \\t\\r') <> ''`,
      ),
  };
}

function csvStaging(columns: string[]): Staging {
  const col = (name: string) => `s.${ident(name)}`;
  const cell = (name: string) => `nullif(${col(name)}, '')`;
  const value = (name: string) =>
    BOOLEAN_FIELDS.has(name)
      ? `case lower(btrim(${col(name)})) when 'true' then 'true'::jsonb when 't' then 'true'::jsonb when '1' then 'true'::jsonb ` +
        `when 'false' then 'false'::jsonb when 'f' then 'false'::jsonb when '0' then 'false'::jsonb else to_jsonb(${cell(name)}) end`
      : cell(name);
  const scalars = columns.filter((c) => c !== JSON_FIELD);
  const hasJson = columns.includes(JSON_FIELD);
  const object = `jsonb_strip_nulls(jsonb_build_object(${scalars.map((c) => `${literal(c)}, ${value(c)}`).join(', ')}))`;
  const withJson = (json: string) =>
    hasJson ? `${object} || case when ${cell(JSON_FIELD)} is null then '{}'::jsonb else jsonb_build_object('properties', ${json}) end` : object;
  const all = columns.map(col).join(', ');
  return {
    create: `CREATE TEMP TABLE tally_import_rows (n bigint GENERATED ALWAYS AS IDENTITY, ${columns.map((c) => `${ident(c)} text`).join(', ')})`,
    copy: `COPY ${STAGING} (${columns.map(ident).join(', ')}) FROM STDIN WITH (FORMAT csv)`,
    partitions: columns.includes('occurred_at') ? partitionsStatement(`left(btrim(${col('occurred_at')}), 10)`) : undefined,
    chunk: (safe) =>
      chunkStatement(
        safe && hasJson ? `s.n, ${all}, ${TRY_JSONB}(${cell(JSON_FIELD)}) as parsed` : `s.n, ${all}`,
        safe && hasJson ? withJson(`coalesce(s.parsed, to_jsonb(${col(JSON_FIELD)}))`) : withJson(`${col(JSON_FIELD)}::jsonb`),
        safe && hasJson ? `(${cell(JSON_FIELD)} is not null and s.parsed is null)` : 'false',
        `concat(${all}) <> ''`,
      ),
  };
}

const chunkResult = z.object({
  result: ingestResult,
  without_key: z.number().int(),
  bad_lines: z.array(z.union([z.number(), z.string()]).transform(Number)),
});

// ---------------------------------------------------------------------------------------
// COPY plumbing
// ---------------------------------------------------------------------------------------

/** One COPY FROM STDIN, written to with backpressure. */
class CopySink {
  private readonly stream;
  private readonly done: Promise<void>;

  constructor(client: pg.ClientBase, sql: string) {
    this.stream = client.query(copyFrom(sql));
    this.done = new Promise((resolve, reject) => {
      this.stream.on('finish', resolve);
      this.stream.on('error', reject);
    });
    this.done.catch(() => undefined);
  }

  async write(bytes: Buffer): Promise<void> {
    if (bytes.length === 0) return;
    if (!this.stream.write(bytes)) {
      await Promise.race([new Promise((resolve) => this.stream.once('drain', resolve)), this.done]);
    }
  }

  end(): Promise<void> {
    this.stream.end();
    return this.done;
  }

  /** Sends CopyFail: the staged rows of this COPY are discarded. */
  async abort(): Promise<void> {
    this.stream.destroy();
    await this.done.catch(() => undefined);
  }
}

function openInput(options: ImportOptions): { stream: Readable; name: string; file: string; totalBytes: number | undefined } {
  if (options.stream) return { stream: options.stream, name: 'stream', file: 'stream', totalBytes: undefined };
  const file = options.path;
  if (file === undefined) throw new UsageError('importFile: give a path or a stream');
  if (file === '-') return { stream: process.stdin, name: 'stdin', file, totalBytes: undefined };
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new UsageError(`${file}: no such file`);
  }
  if (stat.isDirectory()) throw new UsageError(`${file}: is a directory`);
  return {
    stream: fs.createReadStream(file, { highWaterMark: 1 << 20 }),
    name: path.basename(file),
    file,
    totalBytes: stat.isFile() ? stat.size : undefined,
  };
}

// ---------------------------------------------------------------------------------------
// The import
// ---------------------------------------------------------------------------------------

export async function importFile(options: ImportOptions): Promise<ImportSummary> {
  if (options.chunkSize !== undefined && (!Number.isInteger(options.chunkSize) || options.chunkSize < 1)) {
    throw new UsageError(`chunk size: must be a whole number of at least 1 (got ${options.chunkSize})`);
  }
  if (options.commitIntervalMs !== undefined && (!Number.isFinite(options.commitIntervalMs) || options.commitIntervalMs < 1)) {
    throw new UsageError(`commit interval: must be a number of milliseconds, at least 1 (got ${options.commitIntervalMs})`);
  }
  if (options.jobs !== undefined && (!Number.isInteger(options.jobs) || options.jobs < 1 || options.jobs > 16)) {
    throw new UsageError(`jobs: must be a whole number from 1 to 16 (got ${options.jobs})`);
  }
  if (!options.pool === !options.client) throw new UsageError('importFile: give exactly one of pool or client');
  const label = options.source;
  if (label !== undefined && (label.length < 1 || label.length > 500)) throw new UsageError('source: must be 1 to 500 characters');
  const input = openInput(options);
  const sessions: Session[] = [];
  try {
    if (options.client) sessions.push({ client: options.client, chunkStart: 0 });
    else {
      const pool = options.pool!;
      // never wait for a connection this import holds itself
      const jobs = Math.min(options.jobs ?? DEFAULT_JOBS, pool.options.max ?? 10);
      for (let i = 0; i < jobs; i++) {
        const client = await pool.connect();
        sessions.push({ client, release: () => client.release(), chunkStart: 0 });
      }
    }
    return await new ImportRun(sessions, input, options).execute();
  } finally {
    if (input.stream !== process.stdin) input.stream.destroy();
    for (const session of sessions) {
      await cleanUp(session.client);
      session.release?.();
    }
  }
}

/** One database session of an import: its own staging table, one chunk at a time. */
interface Session {
  client: pg.ClientBase;
  release?: () => void;
  /** The COPY of the chunk being staged here. */
  sink?: CopySink;
  /** The chunk being validated here, until it is done. */
  busy?: Promise<void>;
  /** Records of the input before the chunk staged here (its rows are numbered from there). */
  chunkStart: number;
  /** Records (blank ones included) in the chunk staged or being validated here. */
  chunkRecords?: number;
}

/** Drops the session's temporary objects. */
async function cleanUp(client: pg.ClientBase): Promise<void> {
  try {
    await client.query(`DROP TABLE IF EXISTS ${STAGING}`);
    await client.query(`DROP FUNCTION IF EXISTS ${TRY_JSONB}(text)`);
  } catch {
    // the connection is gone, and its temporary objects with it
  }
}

/**
 * One import: reads whole lines, stages chunkSize records at a time through COPY on one
 * of its sessions, and has that session validate and store them while the next chunk is
 * staged on the next session. Chunks commit independently, possibly out of order.
 */
class ImportRun {
  private readonly sessions: Session[];
  private readonly input: ReturnType<typeof openInput>;
  private readonly options: ImportOptions;
  private readonly label: string;
  private readonly started = performance.now();
  /** records: read and staged; storedRecords: those of the chunks that committed. */
  private readonly totals = { rows: 0, records: 0, storedRecords: 0, accepted: 0, duplicates: 0, conflicts: 0, rejected: 0, withoutKey: 0, bytes: 0 };
  private readonly firstRejections: ImportRejection[] = [];
  private readonly firstConflicts: ImportRejection[] = [];
  /** Whether this role may call tally.ensure_partitions_for (an older schema has none). */
  private createPartitions = false;
  /** How long the import has waited for input while the current chunk held rows. */
  private chunkWaitedMs = 0;
  private format: ImportFormat | undefined;
  private chunkSize = DEFAULT_CHUNK_SIZE;
  private staging: Staging | undefined;
  private prepare: ((part: Buffer) => Prepared) | undefined;
  /** item_index of a row = records before it + its position + this (1 for CSV: the header is row 1). */
  private firstIndexOffset = 0;
  /** The session staging the current chunk, and how many records it holds so far. */
  private current: Session | undefined;
  private segmentRecords = 0;
  private nextSession = 0;
  private failure: unknown;
  private stopped = false;

  constructor(sessions: Session[], input: ReturnType<typeof openInput>, options: ImportOptions) {
    this.sessions = sessions;
    this.input = input;
    this.options = options;
    this.label = options.source ?? defaultSourceLabel(input.name);
    this.format = options.format ?? (options.path && options.path !== '-' ? formatFromPath(options.path) : undefined);
  }

  async execute(): Promise<ImportSummary> {
    const client = this.sessions[0]!.client;
    const installed = await client.query<{ ok: boolean }>(`select to_regprocedure('tally.import_events(jsonb,text,bigint)') is not null as ok`);
    if (!installed.rows[0]?.ok) throw new TallyError('schema_outdated', 'tally.import_events is not installed in this database: run `tally migrate` first');
    const maxBatch = await readMaxBatch(client);
    this.chunkSize = this.options.chunkSize ?? Math.min(DEFAULT_CHUNK_SIZE, maxBatch ?? DEFAULT_CHUNK_SIZE);
    if (maxBatch !== undefined && this.chunkSize > maxBatch) {
      throw new UsageError(`chunk size: ${this.chunkSize} rows is more than the setting ingest.max_batch (${maxBatch}) allows per call`);
    }
    const partitions = await client.query<{ ok: boolean }>(
      `select coalesce(has_function_privilege(to_regprocedure('tally.ensure_partitions_for(timestamptz,timestamptz)'), 'EXECUTE'), false) as ok`,
    );
    this.createPartitions = partitions.rows[0]?.ok ?? false;
    try {
      await this.readAll();
      await this.settle();
    } catch (err) {
      // discard what is staged, let the chunks in flight finish, report the first failure
      await this.current?.sink?.abort();
      await this.settle().catch(() => undefined);
      throw this.failure ?? err;
    }
    return this.summary();
  }

  /** Reads the input in whole lines and feeds them on; stops reading once the signal fires. */
  private async readAll(): Promise<void> {
    const signal = this.options.signal;
    // an idle input (a quiet pipe) must not keep a stopped import waiting
    const onAbort = () => this.input.stream.destroy();
    signal?.addEventListener('abort', onAbort, { once: true });
    const reader = (this.input.stream as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
    let carry: Buffer | undefined;
    try {
      for (;;) {
        const step = await this.nextOrCommit(reader.next());
        if (step.done) break;
        const chunk = step.value;
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        this.totals.bytes += buf.length;
        const data = carry ? Buffer.concat([carry, buf]) : buf;
        const lastNl = data.lastIndexOf(NL);
        if (lastNl < 0) {
          carry = data;
          continue;
        }
        carry = lastNl + 1 < data.length ? data.subarray(lastNl + 1) : undefined;
        await this.feed(data.subarray(0, lastNl + 1));
        if (signal?.aborted) this.stopped = true;
        if (this.stopped) break;
      }
    } catch (err) {
      if (!(signal?.aborted && (err as { code?: string }).code === 'ERR_STREAM_PREMATURE_CLOSE')) throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // stopped before the end: release the input as for-await would
      if (this.stopped || signal?.aborted) await reader.return?.(undefined)?.catch(() => undefined);
    }
    if (signal?.aborted) this.stopped = true;
    if (this.stopped) {
      // the rows staged for the unfinished chunk are discarded with its COPY
      await this.current?.sink?.abort();
      this.current = undefined;
      return;
    }
    if (carry) await this.feed(Buffer.concat([carry, Buffer.of(NL)]));
    if (this.current) await this.dispatch();
  }

  /**
   * Waits for the next piece of input; once the import has spent commitIntervalMs in all
   * waiting for input while the current chunk holds rows, commits them. Time spent on the
   * database (COPY backpressure, a busy session) does not count: a file that is read as
   * fast as it is stored keeps its full chunks; a slow pipe is stored as it comes.
   */
  private async nextOrCommit<T>(next: Promise<T>): Promise<T> {
    const interval = this.options.commitIntervalMs ?? DEFAULT_COMMIT_INTERVAL_MS;
    for (;;) {
      if (!this.current || this.segmentRecords === 0 || this.stopped || this.options.signal?.aborted) return next;
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), Math.max(interval - this.chunkWaitedMs, 1));
      });
      const winner = await Promise.race([next.then((value) => ({ value })), timeout]);
      clearTimeout(timer);
      this.chunkWaitedMs += performance.now() - started;
      if (winner !== 'timeout') return winner.value;
      if (this.options.signal?.aborted) return next;
      await this.dispatch();
    }
  }

  /** Starts staging once the format (and for CSV the header) is known; returns the rest. */
  private async begin(head: Buffer): Promise<Buffer> {
    let body = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? head.subarray(3) : head;
    this.format ??= sniffFormat(body);
    if (this.format === 'ndjson') {
      const start = body.toString('utf8', 0, Math.min(body.length, 4096)).trimStart();
      if (start.startsWith('[')) {
        throw new UsageError('the input starts with "[": it looks like one JSON array, not NDJSON (one event object per line); convert it with: jq -c \'.[]\'');
      }
      if (/^\{\s*\n/.test(start)) {
        throw new UsageError('the first line is only "{": it looks like pretty-printed JSON, not NDJSON (one whole event object per line); convert it with: jq -c .');
      }
      this.staging = ndjsonStaging();
      this.prepare = prepareNdjson;
    } else {
      const nl = body.indexOf(NL);
      const columns = checkCsvHeader(body.toString('utf8', 0, nl < 0 ? body.length : nl));
      body = nl < 0 ? Buffer.alloc(0) : body.subarray(nl + 1);
      this.staging = csvStaging(columns);
      const csv = new CsvPreparer(columns.length);
      this.prepare = (part) => csv.prepare(part);
      this.firstIndexOffset = 1;
    }
    for (const { client } of this.sessions) {
      await client.query(`DROP TABLE IF EXISTS ${STAGING}`);
      await client.query(this.staging.create);
      await client.query(CREATE_TRY_JSONB);
    }
    return body;
  }

  /** Feeds whole lines to COPY, handing each chunk of chunkSize records to be validated. */
  private async feed(lines: Buffer): Promise<void> {
    if (!this.prepare) lines = await this.begin(lines);
    const { bytes, recordEnds } = this.prepare!(lines);
    let offset = 0;
    let index = 0;
    while (index < recordEnds.length && !this.stopped) {
      const take = Math.min(this.chunkSize - this.segmentRecords, recordEnds.length - index);
      const end = recordEnds[index + take - 1]!;
      if (!(await this.write(bytes.subarray(offset, end)))) return;
      offset = end;
      index += take;
      this.segmentRecords += take;
      this.totals.records += take;
      if (this.segmentRecords === this.chunkSize) await this.dispatch();
    }
    // the start of a quoted CSV field that goes on past these lines
    if (offset < bytes.length && !this.stopped) await this.write(bytes.subarray(offset));
  }

  /** Writes to the current chunk's COPY, first taking the next session once it is free;
   * false when the signal fired meanwhile (no new chunk is started then). */
  private async write(bytes: Buffer): Promise<boolean> {
    if (!this.current) {
      const session = this.sessions[this.nextSession++ % this.sessions.length]!;
      await session.busy;
      if (this.failure) throw this.failure;
      if (this.options.signal?.aborted) {
        this.stopped = true;
        return false;
      }
      session.chunkStart = this.totals.records;
      session.sink = new CopySink(session.client, this.staging!.copy);
      this.current = session;
      this.chunkWaitedMs = 0;
    }
    try {
      await this.current.sink!.write(bytes);
    } catch (err) {
      throw explainCopyError(err, this.format, this.current.chunkStart, this.firstIndexOffset);
    }
    return true;
  }

  /** Ends the current chunk's COPY and validates it on its session, in the background. */
  private async dispatch(): Promise<void> {
    const session = this.current!;
    this.current = undefined;
    session.chunkRecords = this.segmentRecords;
    this.segmentRecords = 0;
    session.busy = this.runChunk(session).catch((err: unknown) => {
      this.failure ??= err;
    });
    if (this.options.signal?.aborted) this.stopped = true;
    if (this.failure) throw this.failure;
  }

  /** Waits for every chunk in flight; throws the first failure. */
  private async settle(): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.busy));
    if (this.failure) throw this.failure;
  }

  /** Validates and stores one staged chunk (one autocommitted statement), then empties the staging table. */
  private async runChunk(session: Session): Promise<void> {
    const sink = session.sink!;
    session.sink = undefined;
    try {
      await sink.end();
    } catch (err) {
      throw explainCopyError(err, this.format, session.chunkStart, this.firstIndexOffset);
    }
    const staging = this.staging!;
    if (this.createPartitions && staging.partitions) {
      try {
        await session.client.query(staging.partitions);
      } catch (err) {
        if (!PARTITION_SKIP_SQLSTATES.has((err as { code?: string }).code ?? '')) throw err;
      }
    }
    const params = [this.label, session.chunkStart + this.firstIndexOffset];
    let rows: unknown[];
    try {
      rows = (await session.client.query(staging.chunk(false), params)).rows;
    } catch (err) {
      if (!BAD_JSON_SQLSTATES.has((err as { code?: string }).code ?? '')) throw err;
      // some text in this chunk is not JSON: the failed statement stored nothing; redo
      // the chunk converting row by row
      rows = (await session.client.query(staging.chunk(true), params)).rows;
    }
    await session.client.query(`TRUNCATE ${STAGING} RESTART IDENTITY`);
    for (const raw of rows) this.count(chunkResult.parse(raw));
    this.totals.storedRecords += session.chunkRecords ?? 0;
    this.options.onProgress?.({
      bytesRead: this.totals.bytes,
      totalBytes: this.input.totalBytes,
      rows: this.totals.rows,
      accepted: this.totals.accepted,
      duplicates: this.totals.duplicates,
      conflicts: this.totals.conflicts,
      rejected: this.totals.rejected,
      elapsedMs: performance.now() - this.started,
    });
  }

  private count(row: z.infer<typeof chunkResult>): void {
    const t = this.totals;
    t.rows += row.result.accepted + row.result.duplicates + row.result.conflicts.length + row.result.rejected.length;
    t.accepted += row.result.accepted;
    t.duplicates += row.result.duplicates;
    t.conflicts += row.result.conflicts.length;
    for (const c of row.result.conflicts) this.firstConflicts.push({ line: c.index, code: c.code, message: c.message });
    this.firstConflicts.sort((a, b) => a.line - b.line).splice(MAX_REJECTIONS_KEPT);
    t.rejected += row.result.rejected.length;
    t.withoutKey += row.without_key;
    const bad = new Set(row.bad_lines);
    for (const r of row.result.rejected) {
      const notJson = bad.has(r.index) && this.format === 'ndjson';
      this.firstRejections.push({ line: r.index, code: r.code, message: notJson ? 'not valid JSON (the line is kept as a JSON string in payload)' : r.message });
    }
    this.firstRejections.sort((a, b) => a.line - b.line).splice(MAX_REJECTIONS_KEPT);
  }

  private summary(): ImportSummary {
    const elapsedMs = performance.now() - this.started;
    const source = `import:${this.label}`;
    const t = this.totals;
    return {
      file: this.input.file,
      format: this.format ?? 'ndjson',
      source,
      rows: t.rows,
      skipped: t.storedRecords - t.rows,
      accepted: t.accepted,
      duplicates: t.duplicates,
      conflicts: t.conflicts,
      rejected: t.rejected,
      notStored: t.records - t.storedRecords,
      withoutKey: t.withoutKey,
      firstRejections: this.firstRejections,
      firstConflicts: this.firstConflicts,
      rejectedQuery: rejectedQuery(source),
      bytes: t.bytes,
      elapsedMs,
      rowsPerSecond: elapsedMs > 0 ? Math.round((t.rows / elapsedMs) * 1000) : 0,
      complete: !this.stopped,
    };
  }
}

/** The setting ingest.max_batch, when this role may read tally.settings. */
async function readMaxBatch(client: pg.ClientBase): Promise<number | undefined> {
  try {
    const { rows } = await client.query<{ value: string }>(`select value from tally.settings where name = 'ingest.max_batch'`);
    return rows[0] ? Number(rows[0].value) : undefined;
  } catch {
    return undefined;
  }
}

/** A COPY error names a line of the failed segment; say which row of the file it was. */
function explainCopyError(err: unknown, format: ImportFormat | undefined, recordsBefore: number, offset: number): unknown {
  const e = err as { code?: string; where?: string; message?: string };
  const where = /COPY tally_import_rows, line (\d+)/.exec(e.where ?? '');
  if (!where || !e.code) return err;
  const row = recordsBefore + Number(where[1]) + offset;
  const what = format === 'csv' ? `CSV row ${row}` : `line ${row}`;
  return new TallyError(
    'invalid_import',
    `${what}: ${e.message} (the chunks already validated are kept; fix the file and run the same import again: rows with an idempotency_key are not stored twice)`,
    { cause: err },
  );
}
