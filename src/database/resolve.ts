/**
 * Where Tally's database is, resolved in one place: DATABASE_URL when set, otherwise
 * the embedded PostgreSQL in TALLY_DATA_DIR (default .tally/pg).
 */
import pg from 'pg';
import { redactUrl, type TallyConfig } from './config.ts';
import { startEmbedded } from './embedded.ts';
import { TallyError, errorMessage } from '../errors.ts';

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

/** One connected client; a refused connection is a TallyError `database_unreachable`. */
export async function connectClient(connectionString: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString, application_name: applicationName });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw new TallyError('database_unreachable', `cannot connect to the database: ${errorMessage(err)}`, { cause: err });
  }
  return client;
}
