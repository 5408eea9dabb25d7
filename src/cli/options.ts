/**
 * The zod option schemas the commands share, and parseOptions: the first problem with
 * the options becomes one UsageError line (exit 2) that names the option once:
 * `--from: must be an ISO 8601 time with an offset, e.g. 2026-11-01T00:00:00Z`.
 *
 * Messages in the schemas say what the value must be and never repeat the option's name
 * (parseOptions prefixes it); zod's own default texts are replaced by plain ones.
 */
import { z } from 'zod';
import { UsageError } from '../errors.ts';
import { flagName, plainIssue } from '../database/issues.ts';

/** One line for the first issue: `--option: what is wrong`. */
export function describeIssue(issue: z.core.$ZodIssue | undefined, prefix: (key: PropertyKey) => string = flagName): string {
  if (!issue) return 'invalid option';
  const where = issue.code === 'unrecognized_keys' ? '' : issue.path.map(prefix).join(' ');
  return where ? `${where}: ${issue.message}` : issue.message;
}

/** Parses a command's options with its zod schema; the first problem becomes a UsageError. */
export function parseOptions<T extends z.ZodType>(schema: T, raw: unknown): z.infer<T> {
  const parsed = schema.safeParse(raw, { error: plainIssue });
  if (!parsed.success) throw new UsageError(describeIssue(parsed.error.issues[0]));
  return parsed.data;
}

/** A whole number of seconds between 1 and `max` (the option's name comes from parseOptions). */
export const seconds = (max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number of seconds')
    .transform(Number)
    .pipe(z.number().min(1, 'must be at least 1 second').max(max, `must be at most ${max} seconds`));

/** An ISO 8601 time with an offset, as a Date. */
export const instant = () =>
  z.iso
    .datetime({ offset: true, error: 'must be an ISO 8601 time with an offset, e.g. 2026-11-01T00:00:00Z' })
    .transform((v) => new Date(v));

/** `--json` alone. */
export const jsonOnly = z.strictObject({ json: z.boolean().optional() });
