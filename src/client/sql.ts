/**
 * The one way the client calls a Tally function: named arguments with explicit casts,
 * bigint and numeric read as exact decimal text and date as its 'YYYY-MM-DD' text (a
 * calendar day, not an instant in the process's time zone) whatever global type parsers the app set
 * (and, with `exactJson`, the numbers inside json/jsonb too), every error mapped by
 * toTallyError and every row parsed by a zod schema.
 */
import pg from 'pg';
import type { z } from 'zod';
import { InvalidInputError, InvalidResponseError, toTallyError } from './errors.ts';

/** A pool, a checked-out client or a plain client: anything that can run a query. */
export interface Queryable {
  query(config: pg.QueryConfig): Promise<pg.QueryResult>;
}

const INT8 = 20;
const NUMERIC = 1700;
const DATE = 1082;
const JSON_OID = 114;
const JSONB = 3802;
const exact = (text: string) => text;
// Every number as the text the server sent (Node 22's JSON.parse gives the reviver its
// source), so money in a jsonb result is not rounded to a float: the zod schema then
// decides what is a decimal string and what a count.
const jsonNumbersAsText = (text: string): unknown =>
  JSON.parse(text, (_key: string, value: unknown, context?: { source?: string }) =>
    typeof value === 'number' ? (context?.source ?? String(value)) : value,
  );
// Per query, so an app that parses numeric as float globally cannot make money lossy here.
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8 || oid === NUMERIC || oid === DATE ? exact : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};
const EXACT_JSON_TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === JSON_OID || oid === JSONB ? jsonNumbersAsText : TYPES.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export interface CallOptions {
  /**
   * Read every number inside a json/jsonb result as its decimal text (`0.000001234567` stays
   * exact); the schema must accept strings where numbers come (count, decimal, bigintId do).
   */
  exactJson?: boolean;
}

/** [argument name, value, SQL type]; an undefined value leaves the argument out so the SQL default applies. */
export type Arg = readonly [name: string, value: unknown, type: string];

const IDENT = /^[a-z_][a-z0-9_.]*$/;

/** `tally.fn(p_a => $1::uuid, p_b => $2::text)` and its parameters. Names are constants of this module, never input. */
function callSql(fn: string, args: readonly Arg[]): { call: string; values: unknown[] } {
  const values: unknown[] = [];
  const parts: string[] = [];
  for (const [name, value, type] of args) {
    if (value === undefined) continue;
    if (!IDENT.test(name) || !/^[a-z][a-z0-9 ]*(\[\])?$/.test(type)) throw new Error(`bad argument spec ${name}::${type}`);
    values.push(value);
    parts.push(`${name} => $${values.length}::${type}`);
  }
  if (!IDENT.test(fn)) throw new Error(`bad function name ${fn}`);
  return { call: `tally.${fn}(${parts.join(', ')})`, values };
}

async function run(q: Queryable, text: string, values: unknown[], options: CallOptions = {}): Promise<pg.QueryResult> {
  try {
    return await q.query({ text, values, types: options.exactJson ? EXACT_JSON_TYPES : TYPES });
  } catch (err) {
    throw toTallyError(err);
  }
}

function parseOrThrow<S extends z.ZodType>(operation: string, schema: S, value: unknown): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new InvalidResponseError(operation, first ? `${first.path.join('.') || 'row'}: ${first.message}` : 'no detail');
  }
  return parsed.data;
}

/** Parses a wrapper's input; a failure is an InvalidInputError and no query is sent. */
export function parseInput<S extends z.ZodType>(operation: string, schema: S, value: unknown): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new InvalidInputError(
      operation,
      parsed.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message })),
    );
  }
  return parsed.data;
}

/** `select * from tally.fn(...)`: exactly one row, parsed. For functions returning a row type or a one-row table. */
export async function callRow<S extends z.ZodType>(
  q: Queryable,
  fn: string,
  args: readonly Arg[],
  schema: S,
  options?: CallOptions,
): Promise<z.output<S>> {
  const { call, values } = callSql(fn, args);
  const { rows } = await run(q, `select * from ${call}`, values, options);
  if (rows.length !== 1) throw new InvalidResponseError(fn, `expected one row, got ${rows.length}`);
  return parseOrThrow(fn, schema, rows[0]);
}

/** `select tally.fn(...) as value`: a scalar (boolean, jsonb, timestamptz), parsed. */
export async function callValue<S extends z.ZodType>(
  q: Queryable,
  fn: string,
  args: readonly Arg[],
  schema: S,
  options?: CallOptions,
): Promise<z.output<S>> {
  const { call, values } = callSql(fn, args);
  const { rows } = await run(q, `select ${call} as value`, values, options);
  return parseOrThrow(fn, schema, rows[0]?.value);
}

/** `select * from tally.fn(...)`: every row, each parsed. For set-returning functions. */
export async function callRows<S extends z.ZodType>(
  q: Queryable,
  fn: string,
  args: readonly Arg[],
  schema: S,
  options?: CallOptions,
): Promise<z.output<S>[]> {
  const { call, values } = callSql(fn, args);
  const { rows } = await run(q, `select * from ${call}`, values, options);
  return rows.map((row) => parseOrThrow(fn, schema, row));
}

/**
 * A read of Tally's own tables (for the lists no function returns): `text` is a constant of
 * the calling wrapper, every value a parameter, every row parsed.
 */
export async function selectRows<S extends z.ZodType>(q: Queryable, operation: string, text: string, values: unknown[], schema: S): Promise<z.output<S>[]> {
  const { rows } = await run(q, text, values);
  return rows.map((row) => parseOrThrow(operation, schema, row));
}
