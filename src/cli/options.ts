/**
 * The zod option schemas the commands share, and parseOptions: the first problem with
 * the options becomes one UsageError line (exit 2).
 */
import { z } from 'zod';
import { UsageError } from '../errors.ts';

/** Parses a command's options with its zod schema; the first problem becomes a UsageError. */
export function parseOptions<T extends z.ZodType>(schema: T, raw: unknown): z.infer<T> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const flag = issue?.path.map((p) => `--${String(p).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(' ');
    throw new UsageError(`${flag ? `${flag}: ` : ''}${issue?.message ?? 'invalid option'}`);
  }
  return parsed.data;
}

/** A whole number of seconds between 1 and `max`. */
export const seconds = (name: string, max: number) =>
  z
    .string()
    .regex(/^\d+$/, `${name} must be a whole number of seconds`)
    .transform(Number)
    .pipe(z.number().min(1, `${name} must be at least 1 second`).max(max, `${name} must be at most ${max} seconds`));

/** An ISO 8601 time with an offset, as a Date. */
export const instant = (name: string) =>
  z.iso
    .datetime({ offset: true, error: `${name} must be an ISO 8601 time with an offset, e.g. 2026-11-01T00:00:00Z` })
    .transform((v) => new Date(v));

/** `--json` alone. */
export const jsonOnly = z.strictObject({ json: z.boolean().optional() });
