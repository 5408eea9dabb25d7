/**
 * Run SQL as the roles Supabase's API uses, the way PostgREST does: in a transaction,
 * SET LOCAL ROLE and request.jwt.claims set for that transaction only.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { withTransaction } from '../../src/database/transaction.ts';

export type Persona = { role: 'anon' } | { role: 'service_role' } | { role: 'authenticated'; userId: string };

export async function as<T>(pool: pg.Pool, persona: Persona, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await withTransaction(client, async () => {
      await client.query(`set local role ${persona.role}`);
      const claims = persona.role === 'authenticated' ? { sub: persona.userId, role: persona.role } : { role: persona.role };
      await client.query("select set_config('request.jwt.claims', $1, true)", [JSON.stringify(claims)]);
      return fn(client);
    });
  } finally {
    client.release();
  }
}

export const user = (userId: string): Persona => ({ role: 'authenticated', userId });
export const service: Persona = { role: 'service_role' };
export const anon: Persona = { role: 'anon' };

/** Creates a user in auth.users (as the test's superuser connection) and returns its id. */
export async function createUser(pool: pg.Pool, email?: string): Promise<string> {
  const id = randomUUID();
  await pool.query('insert into auth.users (id, email) values ($1, $2)', [id, email ?? `${id}@example.test`]);
  return id;
}
