/**
 * pg-boss as Tally uses it: its schema, the instance name workers register under, and the
 * two ways to start it (a working instance, or a read-only observer for status and
 * schedule changes).
 */
import type pg from 'pg';
import { PgBoss } from 'pg-boss';

export const BOSS_SCHEMA = 'pgboss';
export const WORKER_NAME = 'tally-worker';
/** How often a worker proves it is alive in pgboss.instance (pg-boss's default is 30 s). */
export const INSTANCE_HEARTBEAT_SECONDS = 5;
/** Missed instance beats after which `tally status` presumes a worker dead (a SIGKILL never says goodbye). */
export const INSTANCE_STALE_BEATS = 3;

/** A pg-boss instance on Tally's schema: a working one, or a read-only observer for status. */
export function createBoss(connectionString: string, role: 'worker' | 'observer'): PgBoss {
  const worker = role === 'worker';
  return new PgBoss({
    connectionString,
    schema: BOSS_SCHEMA,
    application_name: worker ? WORKER_NAME : 'tally-status',
    instanceName: WORKER_NAME,
    max: worker ? 4 : 1,
    schedule: worker,
    supervise: worker,
    // how soon a job whose worker died (no heartbeat) is failed, freeing its stately queue
    superviseIntervalSeconds: 10,
    migrate: worker,
    createSchema: worker,
    registerInstance: worker,
    // how often a worker writes its row in pgboss.instance: `tally status` shows when each
    // worker was last seen and presumes it dead after INSTANCE_STALE_BEATS missed beats
    instanceHeartbeatSeconds: INSTANCE_HEARTBEAT_SECONDS,
  });
}

/** Runs `fn` with a started observer pg-boss (it never migrates, schedules or works), then closes it. */
export async function withObserver<T>(connectionString: string, fn: (boss: PgBoss) => Promise<T>): Promise<T> {
  const boss = createBoss(connectionString, 'observer');
  boss.on('error', () => undefined);
  try {
    await boss.start();
    return await fn(boss);
  } finally {
    await boss.stop({ graceful: false, close: true }).catch(() => undefined);
  }
}

/** Whether pg-boss's schema exists (a worker has started against this database). */
export async function bossInstalled(q: Pick<pg.ClientBase, 'query'>): Promise<boolean> {
  const { rows } = await q.query<{ installed: boolean }>('select to_regclass($1) is not null as installed', [`${BOSS_SCHEMA}.version`]);
  return rows[0]?.installed ?? false;
}
