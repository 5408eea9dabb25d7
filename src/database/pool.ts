/**
 * Connection pools, opened here (src/database/ is the only place that opens connections):
 * every pool gets an 'error' listener (an idle connection the server drops, by a restart
 * or pg_terminate_backend, is discarded instead of crashing the process) and an
 * application_name, visible in pg_stat_activity.
 */
import pg from 'pg';
import { ClosingClient } from './closing-client.ts';
import { connectionFailure } from './resolve.ts';

export interface PoolOptions {
  connectionString: string;
  /** application_name of the pool's connections. */
  applicationName: string;
  /** Pool size. */
  max: number;
  /** Called with the error of an idle connection that was lost (default: ignored). */
  onError?: (err: Error) => void;
  /** Idle connections do not keep the process alive (default false). */
  allowExitOnIdle?: boolean;
}

/** A pool that connects lazily, on its first query. */
export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    Client: ClosingClient,
    connectionString: options.connectionString,
    application_name: options.applicationName,
    max: options.max,
    ...(options.allowExitOnIdle ? { allowExitOnIdle: true } : {}),
  });
  pool.on('error', options.onError ?? (() => undefined));
  return pool;
}

/**
 * A pool whose first connection has been made: a failed one is a TallyError
 * (`database_unreachable` or `database_auth_failed`, as for connectClient) and the pool is ended.
 */
export async function connectPool(options: PoolOptions): Promise<pg.Pool> {
  const pool = createPool(options);
  try {
    await pool.query('select 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw connectionFailure(err);
  }
  return pool;
}
