/**
 * The input side of `tally import`: bytes made safe for COPY and cut at record ends, the
 * CSV header checked against the event fields, and the format guessed when not given.
 */
import { isUtf8 } from 'node:buffer';
import path from 'node:path';
import { EVENT_FIELDS } from '../client/events.ts';
import { UsageError } from '../errors.ts';

export type ImportFormat = 'ndjson' | 'csv';

/** The fields of an event, as tally._parse_events knows them (CSV headers must be among these): EVENT_FIELDS' wire names. */
export const EVENT_FIELD_NAMES: readonly EventFieldName[] = Object.values(EVENT_FIELDS);
type EventFieldName = (typeof EVENT_FIELDS)[keyof typeof EVENT_FIELDS];
export const BOOLEAN_FIELDS = new Set(['success', 'cached']);
export const JSON_FIELD = 'properties';

export const NL = 0x0a;
const CR = 0x0d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
/** NDJSON lines are staged raw through COPY's CSV mode with these as quote and delimiter:
 * valid JSON never holds a raw control character, and lines that do are quoted below. */
const NDJSON_QUOTE = 0x01;
const NDJSON_DELIMITER = 0x02;
/** Stands in for bytes PostgreSQL text cannot hold (NUL) and marks lines that are not
 * UTF-8; being a raw control character, it keeps such a line invalid JSON. */
const INVALID_MARK = 0x03;

export function formatFromPath(file: string): ImportFormat | undefined {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.ndjson' || ext === '.jsonl' || ext === '.json') return 'ndjson';
  if (ext === '.csv') return 'csv';
  return undefined;
}

export function sniffFormat(head: Buffer): ImportFormat {
  const first = head.toString('utf8', 0, Math.min(head.length, 4096)).replace(/^\uFEFF/, '').trimStart()[0];
  return first === '{' || first === '[' ? 'ndjson' : 'csv';
}

/** A run of whole lines made safe for COPY, with the offset after each record's end. */
export interface Prepared {
  bytes: Buffer;
  recordEnds: number[];
}

/** Quotes an NDJSON line for COPY: its bytes are then taken literally. */
function quoteLine(line: Buffer): Buffer {
  const parts: Buffer[] = [Buffer.of(NDJSON_QUOTE)];
  let from = 0;
  for (let i = line.indexOf(NDJSON_QUOTE); i >= 0; i = line.indexOf(NDJSON_QUOTE, i + 1)) {
    parts.push(line.subarray(from, i + 1), Buffer.of(NDJSON_QUOTE));
    from = i + 1;
  }
  parts.push(line.subarray(from), Buffer.of(NDJSON_QUOTE));
  return Buffer.concat(parts);
}

function isEndOfDataMarker(buf: Buffer, start: number, end: number): boolean {
  // COPY reads a line holding only \. as the end of the data, even in CSV mode
  const len = end - start;
  return (len === 2 || (len === 3 && buf[start + 2] === CR)) && buf[start] === BACKSLASH && buf[start + 1] === DOT;
}

/** NDJSON: one record per line. Most input passes through untouched; lines COPY would
 * misread (control bytes, CR, \., bytes that are not UTF-8) are rewritten one by one. */
export function prepareNdjson(part: Buffer): Prepared {
  let safe = isUtf8(part) && part.indexOf(0) < 0 && part.indexOf(NDJSON_QUOTE) < 0 && part.indexOf(NDJSON_DELIMITER) < 0 && part.indexOf(CR) < 0;
  for (let i = part.indexOf('\\.'); safe && i >= 0; i = part.indexOf('\\.', i + 2)) {
    const lineEnd = part.indexOf(NL, i);
    if ((i === 0 || part[i - 1] === NL) && isEndOfDataMarker(part, i, lineEnd < 0 ? part.length : lineEnd)) safe = false;
  }
  const out: Buffer[] = [];
  const recordEnds: number[] = [];
  let length = 0;
  if (safe) {
    for (let i = part.indexOf(NL); i >= 0; i = part.indexOf(NL, i + 1)) recordEnds.push(i + 1);
    return { bytes: part, recordEnds };
  }
  for (let start = 0; start < part.length; ) {
    const nl = part.indexOf(NL, start);
    const end = nl < 0 ? part.length : nl;
    let line = part.subarray(start, end > start && part[end - 1] === CR ? end - 1 : end);
    if (!isUtf8(line)) line = Buffer.concat([Buffer.of(INVALID_MARK), Buffer.from(new TextDecoder().decode(line))]);
    if (line.indexOf(0) >= 0) line = Buffer.from(line.map((b) => (b === 0 ? INVALID_MARK : b)));
    if (line.indexOf(NDJSON_QUOTE) >= 0 || line.indexOf(NDJSON_DELIMITER) >= 0 || line.indexOf(CR) >= 0 || isEndOfDataMarker(line, 0, line.length)) {
      line = quoteLine(line);
    }
    out.push(line, Buffer.of(NL));
    length += line.length + 1;
    recordEnds.push(length);
    start = end + 1;
  }
  return { bytes: Buffer.concat(out, length), recordEnds };
}

/** CSV: records end at a newline outside double quotes (the same rule COPY applies).
 * Blank lines become rows of empty cells (skipped later, but counted, so row numbers
 * stay those of a spreadsheet), CRLF becomes LF, and a \. line is quoted. */
export class CsvPreparer {
  private inQuote = false;
  private readonly columns: number;

  constructor(columns: number) {
    this.columns = columns;
  }

  prepare(part: Buffer): Prepared {
    const out: Buffer[] = [];
    const recordEnds: number[] = [];
    let length = 0;
    let copiedFrom = 0;
    let recordStart = this.inQuote ? -1 : 0;
    const emit = (bytes: Buffer) => {
      out.push(bytes);
      length += bytes.length;
    };
    for (let i = 0; i < part.length; i++) {
      const b = part[i];
      if (b === DQUOTE) this.inQuote = !this.inQuote;
      else if (b === NL && !this.inQuote) {
        const crlf = i > 0 && part[i - 1] === CR && i - 1 >= Math.max(recordStart, 0);
        if (recordStart >= 0 && i - (crlf ? 1 : 0) === recordStart) {
          emit(part.subarray(copiedFrom, recordStart));
          emit(Buffer.from(`${','.repeat(this.columns - 1)}\n`));
          copiedFrom = i + 1;
        } else if (recordStart >= 0 && isEndOfDataMarker(part, recordStart, i)) {
          emit(part.subarray(copiedFrom, recordStart));
          emit(Buffer.from('"\\."\n'));
          copiedFrom = i + 1;
        } else if (crlf) {
          emit(part.subarray(copiedFrom, i - 1));
          copiedFrom = i;
        }
        recordEnds.push(length + (i + 1 - copiedFrom));
        recordStart = i + 1;
      }
    }
    if (copiedFrom === 0) return { bytes: part, recordEnds };
    emit(part.subarray(copiedFrom));
    return { bytes: Buffer.concat(out, length), recordEnds };
  }
}

/** Splits one CSV record (the header) into its fields. */
function parseCsvRecord(line: string): string[] {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      fields.push(field);
      field = '';
    } else field += c;
  }
  fields.push(field);
  return fields;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(above + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The header's event fields, in order; a UsageError names the first problem. */
export function checkCsvHeader(header: string): string[] {
  const names = parseCsvRecord(header.replace(/\r$/, '')).map((n) => n.trim().toLowerCase());
  const known = new Set<string>(EVENT_FIELD_NAMES);
  const seen = new Set<string>();
  names.forEach((name, i) => {
    if (name === '') throw new UsageError(`CSV header: column ${i + 1} has no name (the first line must name an event field per column)`);
    if (!known.has(name)) {
      if (name.length > 40) name = `${name.slice(0, 40)}…`;
      const near = EVENT_FIELD_NAMES.filter((f) => editDistance(f, name) <= 2);
      throw new UsageError(
        `CSV header: column ${i + 1} "${name}" is not an event field${near.length > 0 ? ` (did you mean ${near.map((f) => `"${f}"`).join(' or ')}?)` : ''}; ` +
          `the columns can be: ${EVENT_FIELD_NAMES.join(', ')}`,
      );
    }
    if (seen.has(name)) throw new UsageError(`CSV header: column "${name}" appears twice`);
    seen.add(name);
  });
  if (!seen.has('event_type')) throw new UsageError('CSV header: an event_type column is required');
  if (!seen.has('account_id') && !seen.has('api_key_id')) throw new UsageError('CSV header: an account_id or api_key_id column is required');
  return names;
}
