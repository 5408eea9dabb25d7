/**
 * The pg_cron recipe of docs/operations.md, run as written against a real pg_cron. The test
 * starts its own throwaway PostgreSQL cluster (initdb into a temporary directory, with
 * shared_preload_libraries = pg_cron, on a free port), so the shared server is never
 * restarted; it installs Tally there, runs the recipe's SQL taken from the doc (so the doc
 * and the test cannot drift) and waits until pg_cron has fired every job and each run is
 * recorded in tally.job_runs. Without pg_cron installed the test is skipped, with the
 * reason in its name (.ci/run installs postgresql-15-cron where it can).
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { runMigrations } from '../src/database/migrate.ts';

const DOC = new URL('../docs/operations.md', import.meta.url);

/** The first ```sql block after the HTML comment that starts with `marker`. */
function docBlock(marker: string): string {
  const text = fs.readFileSync(DOC, 'utf8');
  const at = text.indexOf(`<!-- ${marker}`);
  if (at === -1) throw new Error(`docs/operations.md has no "<!-- ${marker}" marker`);
  const m = /```sql\n([\s\S]*?)```/.exec(text.slice(at));
  if (!m) throw new Error(`no sql block after "${marker}" in docs/operations.md`);
  return m[1]!;
}

/** A PostgreSQL with pg_cron on this machine: its bin directory, or why there is none. */
function findServer(): { bin: string } | { skip: string } {
  const base = '/usr/lib/postgresql';
  const versions = fs.existsSync(base) ? fs.readdirSync(base).sort((a, b) => Number(a) - Number(b)) : [];
  if (versions.length === 0) return { skip: `no PostgreSQL server binaries in ${base}` };
  const withCron = versions.find((v) => fs.existsSync(path.join(base, v, 'lib', 'pg_cron.so')) && fs.existsSync(path.join(base, v, 'bin', 'initdb')));
  if (!withCron) return { skip: `pg_cron is not installed (apt-get install postgresql-${versions.at(-1)}-cron)` };
  return { bin: path.join(base, withCron, 'bin') };
}

const server = findServer();
const reason = 'skip' in server ? ` (skipped: ${server.skip})` : '';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-pg-cron-'));
let stopServer: (() => void) | undefined;
afterAll(() => {
  stopServer?.();
  fs.rmSync(root, { recursive: true, force: true });
});

/** PostgreSQL refuses to run as root: as root, run its binaries as the OS user postgres. */
function ids(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  };
}

function run(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { ...ids(), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${path.basename(bin)} exited with ${code}: ${out}`))));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ port: 0, host: '127.0.0.1' }, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** A throwaway cluster with pg_cron preloaded; returns its URL. */
async function startCluster(bin: string): Promise<string> {
  const dataDir = path.join(root, 'data');
  const owner = ids();
  if (owner) fs.chownSync(root, owner.uid, owner.gid);
  await run(path.join(bin, 'initdb'), ['--pgdata', dataDir, '--username', 'postgres', '--auth', 'trust', '--encoding', 'UTF8', '--no-locale']);
  const port = await freePort();
  fs.appendFileSync(
    path.join(dataDir, 'postgresql.conf'),
    [
      '',
      `port = ${port}`,
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${root}'`,
      "shared_preload_libraries = 'pg_cron'",
      "cron.database_name = 'postgres'",
      // pg_cron connects to the server itself to run a job: over loopback TCP, trusted here
      "cron.host = '127.0.0.1'",
      '',
    ].join('\n'),
  );
  await run(path.join(bin, 'pg_ctl'), ['start', '--pgdata', dataDir, '--wait', '--timeout', '60', '--log', path.join(root, 'server.log')]);
  stopServer = () => {
    try {
      execFileSync(path.join(bin, 'pg_ctl'), ['stop', '--pgdata', dataDir, '--mode', 'immediate', '--wait'], { ...ids(), stdio: 'ignore' });
    } catch {
      // already stopped
    }
  };
  return `postgres://postgres@127.0.0.1:${port}/postgres`;
}

const SCHEDULE_LINE = /^select cron\.schedule\('([a-z-]+)',\s*'([^']+)',\s*(\$\$.*\$\$)\);$/gm;

describe.skipIf('skip' in server)(`the pg_cron recipe of docs/operations.md${reason}`, () => {
  it('runs as written on a real pg_cron: every job fires and is recorded in tally.job_runs', async () => {
    const recipe = docBlock('pg_cron recipe');
    const jobs = [...recipe.matchAll(SCHEDULE_LINE)].map((m) => ({ name: m[1]!, schedule: m[2]!, command: m[3]! }));
    expect(jobs.map((j) => j.name).sort()).toEqual(
      ['tally-ensure-partitions', 'tally-heartbeat', 'tally-purge-idempotency-keys', 'tally-retention', 'tally-rollups', 'tally-verify-rollups'],
    );

    const url = await startCluster((server as { bin: string }).bin);
    await runMigrations(url);
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => undefined);
    await client.connect();
    try {
      // some events for the rollups job to fold
      const { rows: account } = await client.query("select id from tally.create_account(p_name => 'Cron', p_owner_id => null::uuid, p_timezone => 'UTC')");
      const events = Array.from({ length: 20 }, (_, i) => ({ account_id: account[0].id, event_type: 'api_call', occurred_at: new Date(Date.now() - i * 60_000).toISOString(), cost_usd: '0.01' }));
      const { rows: recorded } = await client.query('select tally.record_events(p_events => $1::jsonb) as r', [JSON.stringify(events)]);
      expect(recorded[0].r).toMatchObject({ accepted: 20 });

      await client.query(recipe); // the recipe, as written
      const { rows: version } = await client.query<{ v: string }>("select extversion as v from pg_extension where extname = 'pg_cron'");
      const { rows: scheduled } = await client.query("select jobname, schedule from cron.job where jobname like 'tally-%' order by jobname");
      expect(scheduled).toEqual(jobs.map((j) => ({ jobname: j.name, schedule: j.schedule })).sort((a, b) => a.jobname.localeCompare(b.jobname)));

      // The daily jobs run every minute for the test, rescheduled the documented way: cron.schedule again, same name.
      for (const job of jobs.filter((j) => j.schedule !== '* * * * *')) {
        await client.query(`select cron.schedule($1, '* * * * *', ${job.command})`, [job.name]);
      }
      expect((await client.query("select count(*)::int as n from cron.job where jobname like 'tally-%' and schedule = '* * * * *'")).rows[0].n).toBe(6);

      // pg_cron fires on the minute: wait for every job to have run and been recorded
      await vi.waitFor(
        async () => {
          const { rows } = await client.query('select job, runs, failures, last_ok from tally.job_runs order by job');
          expect(rows.map((r) => r.job)).toEqual(jobs.map((j) => j.name).sort());
          for (const r of rows) expect(r, r.job).toMatchObject({ last_ok: true, failures: '0' });
          // the first minute's run may find ensure_partitions writing to the ledger at the same
          // moment (and report waiting_for_pids); a later tick folds the events
          const { rows: status } = await client.query('select tally.rollup_status() as s');
          expect(status[0].s).toMatchObject({ pending_events: 0 });
        },
        { timeout: 200_000, interval: 2000 },
      );
      const { rows: details } = await client.query(
        "select distinct d.status from cron.job_run_details d join cron.job j using (jobid) where j.jobname like 'tally-%'",
      );
      expect(details).toEqual([{ status: 'succeeded' }]);
      const { rows: folded } = await client.query("select last_result from tally.job_runs where job = 'tally-rollups'");
      expect(folded[0].last_result).toMatchObject({ more: false });
      const { rows: mismatches } = await client.query("select * from tally.verify_rollups(p_from => now() - interval '2 days', p_to => now() + interval '1 day')");
      expect(mismatches).toEqual([]);

      // The 1.5+ block: second intervals. pg_cron 1.4 refuses them, as the doc says.
      const interval = docBlock('pg_cron 1.5 interval');
      const [, major, minor] = (/^(\d+)\.(\d+)/.exec(version[0]!.v) ?? []).map(Number) as [number, number, number]; // '1.4-1' on Debian 12
      if (major > 1 || minor >= 5) {
        await client.query(interval);
        expect((await client.query("select schedule from cron.job where jobname = 'tally-rollups'")).rows[0].schedule).toBe('5 seconds');
      } else {
        await expect(client.query(interval)).rejects.toThrow(/invalid schedule: 5 seconds/);
      }

      // removing, as documented
      await client.query("select cron.unschedule(jobname) from cron.job where jobname like 'tally-%'");
      expect((await client.query('select count(*)::int as n from cron.job')).rows[0].n).toBe(0);
    } finally {
      await client.end().catch(() => undefined);
    }
  }, 300_000);
});
