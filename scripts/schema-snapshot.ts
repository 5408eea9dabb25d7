/**
 * db/schema.sql: the whole current schema (tables, functions, views, policies, grants and
 * comments of schemas tally and auth), generated from the migrations so a reader sees the
 * current `_fold_rollups` without replaying every file that redefined it.
 *
 *   npm run schema          regenerate db/schema.sql
 *   npm run schema:check    exit 1 when db/schema.sql differs from the migrations (CI runs it)
 *
 * It migrates a throwaway database on the server of SCHEMA_DATABASE_URL, TEST_DATABASE_URL
 * or DATABASE_URL (the first one set) and dumps it with pg_dump of the same major version.
 * The file is generated on PostgreSQL 15, the oldest supported version: pg_dump's output
 * differs a little between versions, so check it against a 15 server.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import { runMigrations } from '../src/database/migrate.ts';

const OUTPUT = new URL('../db/schema.sql', import.meta.url);
const HEADER = `-- The current schema of Tally, generated from db/migrations by \`npm run schema\` (pg_dump
-- --schema-only of schemas tally and auth on PostgreSQL 15, without the monthly partitions of
-- tally.events, which depend on the date). Do not edit: change the schema
-- with a new migration, then regenerate. CI fails when this file and the migrations differ.
`;

function fail(message: string): never {
  process.stderr.write(`error [schema_snapshot]: ${message}\n`);
  process.exit(1);
}

function pgDumpFor(major: number): string {
  for (const candidate of [`/usr/lib/postgresql/${major}/bin/pg_dump`, 'pg_dump']) {
    try {
      const version = execFileSync(candidate, ['--version'], { encoding: 'utf8' });
      if (Number(/(\d+)\.\d+/.exec(version)?.[1]) === major) return candidate;
    } catch {
      // not there: try the next
    }
  }
  return fail(`no pg_dump ${major} found (tried /usr/lib/postgresql/${major}/bin/pg_dump and pg_dump on PATH)`);
}

/** Drops what varies between runs: the version banner, psql's \restrict keys and SET lines. */
export function normalizeDump(dump: string): string {
  const kept = dump
    .split('\n')
    .filter((line) => !/^(-- Dumped (from|by)|\\(un)?restrict |SET |SELECT pg_catalog\.set_config)/.test(line));
  return HEADER + kept.join('\n').replace(/\n{3,}/g, '\n\n').trim() + '\n';
}

async function generate(adminUrl: string): Promise<string> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect().catch((err: Error) => fail(`cannot connect to ${new URL(adminUrl).host}: ${err.message}`));
  const name = `tally_schema_${randomBytes(5).toString('hex')}`;
  try {
    const major = Number((await admin.query<{ v: string }>("select current_setting('server_version_num') as v")).rows[0]!.v) / 10000;
    const pgDump = pgDumpFor(Math.floor(major));
    await admin.query(`create database ${name}`);
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    await runMigrations(url.toString());
    const dump = execFileSync(pgDump, ['--schema-only', '--no-owner', '--schema=tally', '--schema=auth', '--exclude-table=tally.events_p*', '--dbname', url.toString()], {
      encoding: 'utf8',
      maxBuffer: 64 * 2 ** 20,
    });
    return normalizeDump(dump);
  } finally {
    await admin.query(`drop database if exists ${name} with (force)`).catch(() => undefined);
    await admin.end();
  }
}

const adminUrl = process.env.SCHEMA_DATABASE_URL || process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
if (!adminUrl) fail('set SCHEMA_DATABASE_URL (or TEST_DATABASE_URL or DATABASE_URL) to a PostgreSQL 15 server it may create a database on');
const schema = await generate(adminUrl);
if (process.argv.includes('--check')) {
  const current = fs.existsSync(OUTPUT) ? fs.readFileSync(OUTPUT, 'utf8') : '';
  if (current !== schema) {
    const a = current.split('\n');
    const b = schema.split('\n');
    const line = a.findIndex((l, i) => l !== b[i]);
    fail(`db/schema.sql differs from the migrations (first at line ${line + 1}: ${JSON.stringify(a[line] ?? '')} vs ${JSON.stringify(b[line] ?? '')}); run \`npm run schema\` and commit it`);
  }
  process.stdout.write('db/schema.sql matches the migrations\n');
} else {
  fs.writeFileSync(OUTPUT, schema);
  process.stdout.write(`wrote db/schema.sql (${schema.split('\n').length} lines)\n`);
}
