/**
 * The PostgreSQL server the tests run against, resolved in one place:
 * TEST_DATABASE_URL when set; otherwise a testcontainers postgres:17 when Docker is
 * reachable; otherwise an embedded PostgreSQL 17 in a temporary directory.
 * TALLY_TEST_EMBEDDED=1 skips the Docker probe (CI uses it to cover the embedded default).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEmbedded } from '../../src/database/embedded.ts';

export interface TestServer {
  /** A URL for a maintenance database (we create and drop databases through it). */
  adminUrl: string;
  kind: 'url' | 'container' | 'embedded';
  close(): Promise<void>;
}

function dockerLikelyReachable(): boolean {
  if (process.env.DOCKER_HOST) return true;
  return ['/var/run/docker.sock', path.join(os.homedir(), '.docker/run/docker.sock')].some((p) => fs.existsSync(p));
}

async function tryContainer(): Promise<TestServer | undefined> {
  if (!dockerLikelyReachable()) return undefined;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:17').start();
    return {
      adminUrl: container.getConnectionUri(),
      kind: 'container',
      close: async () => {
        await container.stop();
      },
    };
  } catch {
    return undefined;
  }
}

export async function startTestServer(): Promise<TestServer> {
  const url = process.env.TEST_DATABASE_URL;
  if (url) return { adminUrl: url, kind: 'url', close: async () => undefined };

  const container = process.env.TALLY_TEST_EMBEDDED === '1' ? undefined : await tryContainer();
  if (container) return container;

  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-test-pg-'));
  fs.chmodSync(dataDir, 0o755);
  const server = await startEmbedded({ dataDir: path.join(dataDir, 'pg') });
  return {
    adminUrl: server.connectionString,
    kind: 'embedded',
    close: async () => {
      await server.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
