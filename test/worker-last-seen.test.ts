/**
 * `tally status` shows when each worker was last seen, and a worker killed with SIGKILL
 * (which never says goodbye) is soon shown as presumed dead instead of running.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { cleanEnv, runCli, startCli } from './helpers/cli.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

interface StatusWorker {
  pid: number;
  live: boolean;
  presumedDead: boolean;
  lastSeenSecondsAgo: number;
  heartbeatSeconds: number;
}

describe('tally status and workers', () => {
  it('shows when each worker was last seen, and a SIGKILLed one as presumed dead', async () => {
    const env = cleanEnv({ DATABASE_URL: db.url });
    const worker = await startCli(['worker'], env, /tally: ready/);
    const pid = worker.child.pid!;
    try {
      const running = await runCli(['status'], env);
      expect(running.stdout).toMatch(new RegExp(`worker: +1 running \\(\\S+ pid ${pid}, up since \\S+, last seen \\d+ s ago\\)`));
      const json = JSON.parse((await runCli(['status', '--json'], env)).stdout) as { workers: StatusWorker[] };
      expect(json.workers).toEqual([expect.objectContaining({ pid, live: true, presumedDead: false, heartbeatSeconds: 5 })]);
    } finally {
      worker.child.kill('SIGKILL');
    }
    await worker.exited;

    await vi.waitFor(
      async () => {
        const json = JSON.parse((await runCli(['status', '--json'], env)).stdout) as { workers: StatusWorker[] };
        expect(json.workers).toEqual([expect.objectContaining({ pid, live: false, presumedDead: true })]);
        expect(json.workers[0]!.lastSeenSecondsAgo).toBeGreaterThan(15);
      },
      { timeout: 60_000, interval: 1000 },
    );
    const text = await runCli(['status'], env);
    expect(text.stdout).toMatch(/worker: +none running/);
    expect(text.stdout).toMatch(new RegExp(`pid ${pid}: last seen \\d+ s ago, presumed dead \\(it beats every 5 s; killed, or cut off from the database\\)`));
  }, 120_000);
});
