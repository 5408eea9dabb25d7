/**
 * Postgres errors as typed Tally errors. Tally's SQL raises with a SQLSTATE and a stable
 * code in HINT (the SQLSTATE of each code comes from the table tally.error_codes, mirrored
 * by ERROR_CODES below); ERROR_TABLE is the one place that turns (code, SQLSTATE) into a
 * class. Callers branch on `err.code` (stable) or `instanceof`, never on message text.
 * `transient` marks failures where the same call may succeed if simply retried
 * (connection lost, server restarting, serialization conflicts).
 */
import { TallyError } from '../errors.ts';
import { isClientAuthFailure } from '../database/closing-client.ts';

export interface DatabaseErrorInit {
  sqlstate?: string | undefined;
  hint?: string | undefined;
  detail?: string | undefined;
  transient?: boolean;
  cause?: unknown;
}

/** An error the database (or the connection to it) returned. */
export class DatabaseError extends TallyError {
  /** The SQLSTATE, when the server sent one (absent for socket-level failures). */
  readonly sqlstate: string | undefined;
  readonly hint: string | undefined;
  readonly detail: string | undefined;
  /** True when retrying the same call may succeed. */
  readonly transient: boolean;
  /** The field the message names (`tokens_in: must be ...` → `tokens_in`), when it names one. */
  readonly field: string | undefined;

  constructor(code: string, message: string, init: DatabaseErrorInit = {}) {
    super(code, message, { cause: init.cause });
    this.name = 'DatabaseError';
    this.sqlstate = init.sqlstate;
    this.hint = init.hint;
    this.detail = init.detail;
    this.transient = init.transient ?? false;
    this.field = fieldOf(message);
  }
}

/** The connection failed or was lost (refused, reset, terminated, server shutting down or starting). Always transient. */
export class ConnectionError extends DatabaseError {
  constructor(code: string, message: string, init: DatabaseErrorInit = {}) {
    super(code, message, { ...init, transient: true });
    this.name = 'ConnectionError';
  }
}

/** The caller's role may not do this (42501): not granted, not a member, not an owner. */
export class ForbiddenError extends DatabaseError {
  constructor(code: string, message: string, init: DatabaseErrorInit = {}) {
    super(code, message, init);
    this.name = 'ForbiddenError';
  }
}

/** A bad argument to a function (22023): invalid_parameter, invalid_timezone, unknown_setting, invalid_mapping. */
export class InvalidParameterError extends DatabaseError {
  constructor(code: string, message: string, init: DatabaseErrorInit = {}) {
    super(code, message, init);
    this.name = 'InvalidParameterError';
  }
}

/** More events in one call than the setting ingest.max_batch allows. */
export class BatchTooLargeError extends InvalidParameterError {
  constructor(code: string, message: string, init: DatabaseErrorInit = {}) {
    super(code, message, init);
    this.name = 'BatchTooLargeError';
  }
}

/** One event refused by the validator (record_event): `code` is the item code, `field` the field it names. */
export class InvalidEventError extends DatabaseError {
  constructor(code: string, message: string, init: DatabaseErrorInit = {}) {
    super(code, message, init);
    this.name = 'InvalidEventError';
  }
}

/** A presented API key was not accepted (28000): unknown_api_key, revoked_api_key, expired_api_key. */
export class ApiKeyError extends DatabaseError {
  constructor(code: string, message: string, init: DatabaseErrorInit = {}) {
    super(code, message, init);
    this.name = 'ApiKeyError';
  }
}

/** A named object does not exist (P0002): account_not_found, user_not_found, event_not_found, api_key_not_found (by id; service callers only). */
export class NotFoundError extends DatabaseError {
  constructor(code: string, message: string, init: DatabaseErrorInit = {}) {
    super(code, message, init);
    this.name = 'NotFoundError';
  }
}

/** The change conflicts with existing state: duplicate_external_id (23505), last_owner. */
export class ConflictError extends DatabaseError {
  constructor(code: string, message: string, init: DatabaseErrorInit = {}) {
    super(code, message, init);
    this.name = 'ConflictError';
  }
}

/** Input refused by the client's zod schema, before any round trip. `issues` lists each problem with its path. */
export class InvalidInputError extends TallyError {
  readonly issues: ReadonlyArray<{ path: string; message: string }>;

  constructor(operation: string, issues: ReadonlyArray<{ path: string; message: string }>) {
    super('invalid_input', `${operation}: ${issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`);
    this.name = 'InvalidInputError';
    this.issues = issues;
  }
}

/** A row from the database did not have the shape the client expects (a schema/version mismatch). */
export class InvalidResponseError extends TallyError {
  constructor(operation: string, detail: string) {
    super('invalid_response', `${operation}: unexpected result from the database (${detail}); is the schema migrated to this version?`);
    this.name = 'InvalidResponseError';
  }
}

type ErrorClass = new (code: string, message: string, init?: DatabaseErrorInit) => DatabaseError;

/** The codes record_event raises for one bad event (the same codes record_events reports per item). */
export const EVENT_CODES = [
  'invalid_event', 'unknown_field', 'invalid_type', 'invalid_value', 'out_of_range', 'too_long', 'too_large',
  'missing_field', 'missing_tenant', 'future_timestamp', 'account_mismatch', 'unpriced_model',
] as const;

interface Rule {
  /** Tally code from HINT; '*' matches any (including none), '' only none. */
  code: string;
  /** SQLSTATE, or a class prefix ending in '*' ('08*'); '*' matches any. */
  sqlstate: string;
  error: ErrorClass;
  /** The code to report when the server sent no Tally code. */
  fallbackCode?: string;
  transient?: boolean;
}

/**
 * Every stable code Tally's SQL raises (in HINT) or records (in rejected_events), with the
 * SQLSTATE it is raised with and the class it becomes. The SQL side is the table
 * tally.error_codes, which tally._raise reads; test/error-table.test.ts checks that both
 * list exactly the same (code, SQLSTATE) pairs and that docs/errors.md lists every code.
 */
export const ERROR_CODES: Readonly<Record<string, { sqlstate: string; error: ErrorClass }>> = {
  invalid_parameter: { sqlstate: '22023', error: InvalidParameterError },
  invalid_timezone: { sqlstate: '22023', error: InvalidParameterError },
  last_owner: { sqlstate: '22023', error: ConflictError },
  batch_too_large: { sqlstate: '22023', error: BatchTooLargeError },
  unknown_setting: { sqlstate: '22023', error: InvalidParameterError },
  invalid_mapping: { sqlstate: '22023', error: InvalidParameterError },
  timezone_locked: { sqlstate: '22023', error: InvalidParameterError },
  past_retention: { sqlstate: '22023', error: InvalidParameterError },
  forbidden: { sqlstate: '42501', error: ForbiddenError },
  duplicate_external_id: { sqlstate: '23505', error: ConflictError },
  account_not_found: { sqlstate: 'P0002', error: NotFoundError },
  user_not_found: { sqlstate: 'P0002', error: NotFoundError },
  event_not_found: { sqlstate: 'P0002', error: NotFoundError },
  api_key_not_found: { sqlstate: 'P0002', error: NotFoundError },
  unknown_api_key: { sqlstate: '28000', error: ApiKeyError },
  revoked_api_key: { sqlstate: '28000', error: ApiKeyError },
  expired_api_key: { sqlstate: '28000', error: ApiKeyError },
  rollups_mismatch: { sqlstate: 'P0001', error: DatabaseError },
  ...Object.fromEntries(EVENT_CODES.map((code) => [code, { sqlstate: '22023', error: InvalidEventError }])),
  meter_mapping_broken: { sqlstate: '22023', error: InvalidEventError },
  // recorded (result conflicts, rejected_events), never raised
  idempotency_conflict: { sqlstate: '23505', error: ConflictError },
};

/**
 * THE table: first matching rule wins. Rules naming a Tally code (from ERROR_CODES) come
 * first; rules on SQLSTATE alone cover errors Postgres raises itself (a missing GRANT is
 * 42501 without a HINT) and the connection-level failures.
 */
export const ERROR_TABLE: readonly Rule[] = [
  ...Object.entries(ERROR_CODES).map(([code, { error }]) => ({ code, sqlstate: '*', error })),
  // SQLSTATE alone
  { code: '*', sqlstate: '42501', error: ForbiddenError, fallbackCode: 'forbidden' },
  // A refused login (no such role, wrong password, no pg_hba.conf entry): Postgres's own
  // 28000/28P01 never carries a Tally code; Tally's API-key errors always do.
  { code: '', sqlstate: '28000', error: DatabaseError, fallbackCode: 'database_auth_failed' },
  { code: '', sqlstate: '28P01', error: DatabaseError, fallbackCode: 'database_auth_failed' },
  { code: '*', sqlstate: '28000', error: ApiKeyError }, // an API-key code this version does not know yet
  { code: '*', sqlstate: 'P0002', error: NotFoundError, fallbackCode: 'not_found' },
  { code: '*', sqlstate: '23505', error: ConflictError, fallbackCode: 'conflict' },
  { code: '*', sqlstate: '22023', error: InvalidParameterError, fallbackCode: 'invalid_parameter' },
  { code: '*', sqlstate: '42P01', error: NotFoundError, fallbackCode: 'undefined_table' }, // e.g. attachMeter('no_such_table', ...)
  { code: '*', sqlstate: '08*', error: ConnectionError, fallbackCode: 'connection_error' },
  { code: '*', sqlstate: '57P01', error: ConnectionError, fallbackCode: 'connection_error' }, // admin_shutdown (pg_terminate_backend, fast shutdown)
  { code: '*', sqlstate: '57P02', error: ConnectionError, fallbackCode: 'connection_error' }, // crash_shutdown
  { code: '*', sqlstate: '57P03', error: ConnectionError, fallbackCode: 'connection_error' }, // cannot_connect_now (starting up)
  { code: '*', sqlstate: '53300', error: ConnectionError, fallbackCode: 'connection_error' }, // too_many_connections
  { code: '*', sqlstate: '40001', error: DatabaseError, fallbackCode: 'serialization_failure', transient: true },
  { code: '*', sqlstate: '40P01', error: DatabaseError, fallbackCode: 'deadlock_detected', transient: true },
];

/** Socket errors and node-postgres messages that mean "the connection is gone", not "the call was wrong". */
const TRANSIENT_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN']);
const TRANSIENT_MESSAGES =
  /Connection terminated|Connection ended unexpectedly|terminating connection|Client has encountered a connection error|timeout exceeded when trying to connect|the database system is (starting up|shutting down|in recovery mode)|server closed the connection unexpectedly/i;

const SQLSTATE = /^[0-9A-Z]{5}$/;
// A Tally code is a lowercase slug; Postgres's own hints are sentences.
const TALLY_CODE = /^[a-z][a-z0-9_]{1,62}$/;

function fieldOf(message: string): string | undefined {
  const m = /^([a-z_][a-z0-9_.]*(?:, [a-z_][a-z0-9_.]*)*): /.exec(message);
  return m?.[1];
}

function matches(rule: Rule, code: string | undefined, sqlstate: string | undefined): boolean {
  if (rule.code === '' ? code !== undefined : rule.code !== '*' && rule.code !== code) return false;
  if (rule.sqlstate === '*') return true;
  if (!sqlstate) return false;
  return rule.sqlstate.endsWith('*') ? sqlstate.startsWith(rule.sqlstate.slice(0, -1)) : rule.sqlstate === sqlstate;
}

interface PgLikeError {
  code?: unknown;
  message?: unknown;
  hint?: unknown;
  detail?: unknown;
}

/** Maps anything a pg call threw to a TallyError (TallyErrors pass through unchanged). */
export function toTallyError(err: unknown): TallyError {
  if (err instanceof TallyError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as PgLikeError;
  const message = typeof e.message === 'string' ? e.message : String(err);
  const rawCode = typeof e.code === 'string' ? e.code : undefined;
  const sqlstate = rawCode && SQLSTATE.test(rawCode) ? rawCode : undefined;
  const hint = typeof e.hint === 'string' ? e.hint : undefined;
  const detail = typeof e.detail === 'string' ? e.detail : undefined;
  const tallyCode = hint && TALLY_CODE.test(hint) ? hint : undefined;
  const init = { sqlstate, hint, detail, cause: err };

  const rule = ERROR_TABLE.find((r) => matches(r, tallyCode, sqlstate));
  if (rule) {
    return new rule.error(tallyCode ?? rule.fallbackCode ?? 'database_error', message, rule.transient ? { ...init, transient: true } : init);
  }
  if (!sqlstate && ((rawCode && TRANSIENT_SOCKET_CODES.has(rawCode)) || TRANSIENT_MESSAGES.test(message))) {
    return new ConnectionError('connection_error', message, init);
  }
  // pg's own refusal to answer a password request (no password in the URL)
  if (!sqlstate && isClientAuthFailure(err)) return new DatabaseError('database_auth_failed', message, init);
  // A Tally code this version does not know yet still reaches the caller as the code.
  return new DatabaseError(tallyCode ?? (sqlstate ? 'database_error' : 'client_error'), message, init);
}

/** True when retrying the failed call may succeed. */
export function isTransient(err: unknown): boolean {
  const e = toTallyError(err);
  return e instanceof DatabaseError && e.transient;
}
