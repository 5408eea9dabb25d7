/**
 * What `tally import` shows: a progress bar on a terminal (plain lines every few seconds
 * otherwise), and the summary at the end.
 */
import type { ImportProgress, ImportSummary } from '../ingest/import.ts';
import fs from 'node:fs';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { connectPool } from '../database/pool.ts';
import type { ResolvedDatabase } from '../database/resolve.ts';
import { TallyError, UsageError } from '../errors.ts';
import { importFile } from '../ingest/import.ts';
import { EVENT_FIELD_NAMES } from '../ingest/import-input.ts';
import { EXIT_FAILURE, log, withDatabase } from './context.ts';
import { parseOptions } from './options.ts';
import { progressDisplay, type ProgressDisplay } from './progress.ts';
import { withStopSignal } from './signals.ts';

/** Words joined by spaces into lines of at most `width` characters, each line indented. */
function wrapWords(words: readonly string[], width: number, indent: string): string {
  const lines: string[] = [];
  for (const word of words) {
    const last = lines.at(-1);
    if (last !== undefined && last.length + 1 + word.length <= width) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  return lines.map((l) => indent + l).join('\n');
}

/** The `tally import --help` text after the options: it answers the usual questions. */
export const IMPORT_HELP = `
Formats:
  NDJSON  one event object per line, fields as in record_events (.ndjson, .jsonl, .json).
          Blank lines are skipped. A line that is not valid JSON is rejected, not fatal.
  CSV     a header row naming event fields, then one event per row (.csv). Columns:
${wrapWords(EVENT_FIELD_NAMES, 81, ' '.repeat(10))}
          event_type and account_id or api_key_id are required; an unknown column is an
          error before anything is loaded. An empty cell means the field is absent;
          success/cached take true/false/t/f/1/0; properties holds a JSON object; numbers
          are plain decimals. Rows with every cell empty are skipped.
  Without --format the extension decides, else the first byte ({ or [ means NDJSON).

How it works:
  The file streams through COPY into a temporary table; every --chunk-size rows are then
  validated and stored by tally.import_events in one transaction, on one of --jobs
  sessions (while one session validates a chunk, the next chunk is loaded on another).
  Each chunk commits on its own, so an interrupted import keeps the chunks it finished.
  A chunk also commits when the input has kept the import waiting, in all, for
  --commit-interval (default 1000 ms) with rows staged: rows piped in slowly are stored
  as they come.
  Before a chunk is stored, the monthly partitions its rows need are created, so history
  goes straight to its partition (not to the default one).

Idempotency:
  Rows with an idempotency_key are stored once per account (within the setting
  ingest.idempotency_retention, default 7 days): running the same import again (after a
  crash, Ctrl-C or a fix) reports them as duplicates and stores nothing twice. A row whose
  key is already stored with a different payload is a conflict: not stored (the first
  event is kept), counted apart and kept in tally.rejected_events as idempotency_conflict.
  Rows without a key are stored again by every run (the summary counts them).

Rejected rows:
  Kept in tally.rejected_events with source 'import:<label>' and item_index = the line
  number (NDJSON) or the spreadsheet row number with the header as row 1 (CSV); each run
  has its own label. The summary prints it and the query that lists them:
    select item_index as line, code, message, payload from tally.rejected_events
    where source = 'import:<label>' order by item_index;

Output:
  A summary on stdout (--json for machine output): rows, accepted, duplicates, conflicts,
  rejected (the first ten with line, code and message), the lines read but not stored
  when the import stopped early, elapsed time and rows/s. Progress goes to
  stderr: a bar on a terminal, a line every 10 s otherwise.

Exit codes: 0 done (even with rejected rows, unless --strict), 1 failed or stopped by
Ctrl-C (the finished chunks are kept), 2 bad usage (options, missing file, bad CSV header).

Examples:
  tally import events.ndjson
  zcat events.csv.gz | tally import - --format csv --source backfill-2026-11 --json`;

const count = (n: number) => n.toLocaleString('en-US');
const megabytes = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
const perSecond = (rows: number, ms: number) => (ms > 0 ? Math.round((rows / ms) * 1000) : 0);

/**
 * A bar (bytes read of the file's size when known, rows, rows/s) when `stream` is a
 * terminal; otherwise one line every `intervalMs`.
 */
export function importProgressDisplay(stream: NodeJS.WriteStream, intervalMs = 10_000): ProgressDisplay<ImportProgress> {
  return progressDisplay<ImportProgress>({
    stream,
    intervalMs,
    clock: (p) => p.elapsedMs,
    format: (p) =>
      p.totalBytes === undefined
        ? 'importing | {read} read | {rows} rows | {speed} rows/s'
        : 'importing {bar} {percentage}% | {read} of {size} | {rows} rows | {speed} rows/s | ETA {eta_formatted}',
    bar: (p) => ({
      value: p.totalBytes === undefined ? 0 : p.bytesRead,
      total: p.totalBytes ?? 0,
      payload: { rows: count(p.rows), speed: count(perSecond(p.rows, p.elapsedMs)), read: megabytes(p.bytesRead), size: megabytes(p.totalBytes ?? 0) },
    }),
    line: (p) => {
      const read = p.totalBytes ? `${megabytes(p.bytesRead)} of ${megabytes(p.totalBytes)} (${Math.floor((p.bytesRead / p.totalBytes) * 100)}%)` : `${megabytes(p.bytesRead)}`;
      return `tally: import: ${read} read, ${count(p.rows)} rows (${count(p.accepted)} accepted, ${count(p.duplicates)} duplicates, ${p.conflicts > 0 ? `${count(p.conflicts)} conflicts, ` : ''}${count(p.rejected)} rejected), ${count(perSecond(p.rows, p.elapsedMs))} rows/s`;
    },
  });
}

/** The human summary printed on stdout. */
export function formatImportSummary(s: ImportSummary): string {
  const width = Math.max(...[s.accepted, s.duplicates, s.conflicts, s.rejected, s.notStored].map((n) => count(n).length));
  const line = (label: string, n: number, note = '') => `  ${label.padEnd(11)}${count(n).padStart(width)}${note ? `  ${note}` : ''}`;
  const out = [
    `${s.complete ? 'imported' : 'stopped importing'} ${s.file === '-' ? 'stdin' : s.file} (${s.format}) in ${(s.elapsedMs / 1000).toFixed(1)} s: ` +
      `${count(s.rows)} rows, ${count(s.rowsPerSecond)} rows/s${s.skipped > 0 ? ` (${count(s.skipped)} blank ${s.format === 'csv' ? 'rows' : 'lines'} skipped)` : ''}`,
    line('accepted', s.accepted),
    line('duplicates', s.duplicates, s.duplicates > 0 ? 'idempotency key already stored (or repeated in the file)' : ''),
  ];
  if (s.conflicts > 0) {
    out.push(line('conflicts', s.conflicts, `idempotency key already stored with a different payload: not stored; kept in tally.rejected_events, source '${s.source}'`));
    for (const c of s.firstConflicts) out.push(`    ${s.format === 'csv' ? 'row' : 'line'} ${c.line}: ${c.code}: ${c.message}`);
    if (s.conflicts > s.firstConflicts.length) out.push(`    … and ${count(s.conflicts - s.firstConflicts.length)} more`);
  }
  out.push(line('rejected', s.rejected, s.rejected > 0 ? `kept in tally.rejected_events, source '${s.source}'` : ''));
  if (s.rejected > 0) {
    for (const r of s.firstRejections) out.push(`    ${s.format === 'csv' ? 'row' : 'line'} ${r.line}: ${r.code}: ${r.message}`);
    if (s.rejected > s.firstRejections.length) out.push(`    … and ${count(s.rejected - s.firstRejections.length)} more`);
    out.push(`  all of them: ${s.rejectedQuery}`);
  }
  if (s.withoutKey > 0) {
    out.push(`  note: ${count(s.withoutKey)} rows had no idempotency_key; importing this file again would store them again`);
  }
  if (s.notStored > 0) {
    out.push(line('not stored', s.notStored, `${s.format === 'csv' ? 'rows' : 'lines'} read but not stored: their chunk had not committed when the import stopped`));
  }
  if (!s.complete) out.push('  stopped early: run the same command again to import the rest (rows with an idempotency_key are not stored twice)');
  return out.join('\n');
}

const importOptions = z.strictObject({
  format: z.enum(['ndjson', 'csv'], { error: 'must be ndjson or csv' }).optional(),
  chunkSize: z
    .string()
    .regex(/^\d+$/, 'must be a whole number of rows')
    .transform(Number)
    .pipe(z.number().min(1, 'must be at least 1 row').max(100_000, 'must be at most 100000 rows'))
    .optional(),
  commitInterval: z
    .string()
    .regex(/^\d+$/, 'must be a whole number of milliseconds')
    .transform(Number)
    .pipe(z.number().min(1, 'must be at least 1 ms').max(3_600_000, 'must be at most 3600000 ms'))
    .optional(),
  jobs: z
    .string()
    .regex(/^\d+$/, 'must be a whole number of sessions')
    .transform(Number)
    .pipe(z.number().min(1, 'must be at least 1').max(16, 'must be at most 16'))
    .default(2),
  source: z.string().min(1, 'needs a label').max(500, 'must be at most 500 characters').optional(),
  json: z.boolean().optional(),
  strict: z.boolean().optional(),
  progress: z.boolean().default(true),
});

export function registerImport(program: Command): void {
  program
    .command('import')
    .description('bulk-load events from an NDJSON or CSV file (- for stdin) with the validation and idempotency of record_events')
    .argument('<file>', 'the file to import, or - to read stdin')
    .addOption(new Option('--format <format>', 'ndjson or csv (default: from the file extension, else from the first byte)'))
    .option('--chunk-size <rows>', 'rows per transaction (default 10000, at most the setting ingest.max_batch)')
    .option('--commit-interval <ms>', 'commit the staged rows once the input has kept them waiting this long in all (default 1000)')
    .option('--jobs <n>', 'database sessions validating chunks at once (default 2)')
    .option('--source <label>', "label of this run in tally.rejected_events (default '<file name>@<UTC time>-<4 hex>')")
    .option('--json', 'print the summary as JSON')
    .option('--strict', 'exit with code 1 when any row was rejected')
    .option('--no-progress', 'print no progress on stderr')
    .addHelpText('after', IMPORT_HELP)
    .action(async (file: string, raw) => {
      const options = parseOptions(importOptions, raw);
      if (file !== '-' && !fs.existsSync(file)) throw new UsageError(`${file}: no such file`);
      if (file === '-' && process.stdin.isTTY) log('reading events from the terminal; end with Ctrl-D');
      await withDatabase({}, (db) => runImport(db, file, options));
    });
}

async function runImport(db: ResolvedDatabase, file: string, options: z.infer<typeof importOptions>): Promise<void> {
  const pool = await connectPool({ connectionString: db.connectionString, applicationName: 'tally-import', max: options.jobs });
  // Ctrl-C stops reading and lets the chunks being validated commit; a second one quits at once.
  const onFirst = () => log('stopping: waiting for the chunks being validated to commit (Ctrl-C again to quit now)');
  const progress = options.progress ? importProgressDisplay(process.stderr) : undefined;
  try {
    await withStopSignal(
      async (signal) => {
        const summary = await importFile({
          pool,
          path: file,
          format: options.format,
          chunkSize: options.chunkSize,
          commitIntervalMs: options.commitInterval,
          jobs: options.jobs,
          source: options.source,
          signal,
          onProgress: progress ? (p) => progress.update(p) : undefined,
        });
        progress?.stop();
        process.stdout.write(options.json ? JSON.stringify(summary, null, 2) + '\n' : formatImportSummary(summary) + '\n');
        if (!summary.complete) throw new TallyError('import_stopped', 'stopped before the end of the input; run the same command again to import the rest');
        if (options.strict && summary.rejected > 0) throw new TallyError('rows_rejected', `${summary.rejected} row(s) rejected (--strict)`);
      },
      { onFirst, exitCode: EXIT_FAILURE },
    );
  } finally {
    progress?.stop();
    await pool.end().catch(() => undefined);
  }
}
