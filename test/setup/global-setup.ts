/**
 * Starts the test server once per run and builds a template database with every
 * migration applied. Each test file clones it (CREATE DATABASE … TEMPLATE …), so files
 * run in parallel and never see each other's rows.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { runMigrations } from '../../src/database/migrate.ts';
import { databaseUrl } from '../helpers/urls.ts';
import { startTestServer } from './test-server.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    testDb: { adminUrl: string; template: string; kind: string };
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startTestServer();
  const template = `tally_tpl_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  let version: string | undefined;
  try {
    await admin.query(`CREATE DATABASE ${template}`);
    version = (await admin.query<{ server_version: string }>('show server_version')).rows[0]?.server_version;
  } finally {
    await admin.end();
  }
  await runMigrations(databaseUrl(server.adminUrl, template));
  console.log(`tests run on PostgreSQL ${version} (${server.kind}), template database ${template}`);
  project.provide('testDb', { adminUrl: server.adminUrl, template, kind: server.kind });

  return async () => {
    const client = new pg.Client({ connectionString: server.adminUrl });
    await client.connect();
    try {
      await client.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`);
    } finally {
      await client.end();
    }
    await server.close();
  };
}
