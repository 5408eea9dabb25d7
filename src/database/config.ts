import path from 'node:path';
import { z } from 'zod';
import { UsageError } from '../errors.ts';
import { plainIssue } from './issues.ts';

const postgresUrl = z
  .string()
  .trim()
  .min(1)
  .refine((value) => {
    try {
      const url = new URL(value);
      return url.protocol === 'postgres:' || url.protocol === 'postgresql:';
    } catch {
      return false;
    }
  }, 'must be a postgres:// or postgresql:// URL');

const port = z
  .string()
  .trim()
  .regex(/^\d+$/, 'must be a port number from 1 to 65535')
  .transform(Number)
  .pipe(z.number().min(1, 'must be a port number from 1 to 65535').max(65535, 'must be a port number from 1 to 65535'));

/** Every environment variable Tally reads. docs/cli.md's configuration table lists the same. */
const envSchema = z.object({
  DATABASE_URL: postgresUrl.optional(),
  TALLY_DATA_DIR: z.string().trim().min(1).optional(),
  TALLY_EMBEDDED_PORT: port.optional(),
});

export interface TallyConfig {
  /** The server to use; unset means the embedded PostgreSQL. */
  databaseUrl: string | undefined;
  /** Data directory of the embedded PostgreSQL (absolute). */
  dataDir: string;
  /** Port the embedded PostgreSQL must listen on (a taken one is an error); unset: the saved one, else a free one. */
  embeddedPort: number | undefined;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): TallyConfig {
  // An empty variable means unset, as in most shells' `FOO= cmd`.
  const present = Object.fromEntries(
    Object.entries(env).filter(([key, value]) => key in envSchema.shape && value !== undefined && value !== ''),
  );
  const parsed = envSchema.safeParse(present, { error: plainIssue });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UsageError(`${issue?.path.join('.') ?? 'environment'}: ${issue?.message ?? 'invalid value'}`);
  }
  const { DATABASE_URL, TALLY_DATA_DIR, TALLY_EMBEDDED_PORT } = parsed.data;
  return {
    databaseUrl: DATABASE_URL,
    dataDir: path.resolve(cwd, TALLY_DATA_DIR ?? path.join('.tally', 'pg')),
    embeddedPort: TALLY_EMBEDDED_PORT,
  };
}

/** The URL with its password masked, for logs and status lines. */
export function redactUrl(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '<unparseable url>';
  }
}
