/**
 * Where Tally's database is, resolved in one place: DATABASE_URL when set, otherwise
 * the embedded PostgreSQL in TALLY_DATA_DIR (default .tally/pg).
 */
import pg from 'pg';
import { redactUrl, type TallyConfig } from './config.ts';
import { startEmbedded } from './embedded.ts';
import { TallyError, errorMessage } from '../errors.ts';
import { ClosingClient, isClientAuthFailure } from './closing-client.ts';

export interface ResolvedDatabase {
  connectionString: string;
  kind: 'external' | 'embedded';
  /** One human-readable line: which server, password masked. */
  description: string;
  /** Stops the embedded server if this process started it; a no-op otherwise. */
  close(): Promise<void>;
}

export interface ResolveOptions {
  /** May the embedded cluster be created if TALLY_DATA_DIR has none (default true)? */
  create?: boolean;
}

export async function resolveDatabase(config: TallyConfig, log?: (line: string) => void, options: ResolveOptions = {}): Promise<ResolvedDatabase> {
  if (config.databaseUrl) {
    return {
      connectionString: config.databaseUrl,
      kind: 'external',
      description: redactUrl(config.databaseUrl),
      close: async () => undefined,
    };
  }
  const server = await startEmbedded({ dataDir: config.dataDir, port: config.embeddedPort, log, create: options.create ?? true });
  return {
    connectionString: server.connectionString,
    kind: 'embedded',
    description: `embedded PostgreSQL at 127.0.0.1:${server.port} (data ${server.dataDir}${server.started ? '' : ', already running'})`,
    close: () => server.stop(),
  };
}

/** SQLSTATEs of a refused login: invalid_authorization_specification (no such role, no pg_hba entry), invalid_password. */
const LOGIN_FAILED = new Set(['28000', '28P01']);

/**
 * A failed connection attempt as a TallyError: `database_auth_failed` when the server
 * refused the login (no such role, wrong password, no pg_hba.conf entry), otherwise
 * `database_unreachable` (refused, no answer, no such database).
 */
export function connectionFailure(err: unknown): TallyError {
  const sqlstate = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  if (typeof sqlstate === 'string' && LOGIN_FAILED.has(sqlstate)) {
    return new TallyError('database_auth_failed', `the database refused the login: ${errorMessage(err)}`, { cause: err });
  }
  if (isClientAuthFailure(err)) {
    return new TallyError('database_auth_failed', `the database asks for a password and the connection URL has none (${errorMessage(err)})`, { cause: err });
  }
  return new TallyError('database_unreachable', `cannot connect to the database: ${errorMessage(err)}`, { cause: err });
}

/** One connected client; a failed connection is a TallyError (`database_unreachable` or `database_auth_failed`). */
export async function connectClient(connectionString: string, applicationName: string): Promise<pg.Client> {
  const client = new ClosingClient({ connectionString, application_name: applicationName });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw connectionFailure(err);
  }
  return client;
}
