/**
 * Plain-English text for zod's own issues, for messages a person reads: the environment
 * (config.ts) and the CLI's options (cli/options.ts). A schema's own message (`.regex(re,
 * 'must be …')`) always wins; this only replaces zod's defaults ("Invalid input: expected
 * string, received undefined", "Unrecognized key", "Too small: expected number to be >=1").
 * Every text says what the value must be, without naming the option: the caller prefixes it.
 */
import type { z } from 'zod';

const typeNames: Record<string, string> = {
  string: 'a text value',
  number: 'a number',
  int: 'a whole number',
  boolean: 'given without a value',
  date: 'a time',
  array: 'a list',
  object: 'an object',
};

/** A zod error map (pass as `safeParse(value, { error: plainIssue })`). */
export function plainIssue(issue: z.core.$ZodRawIssue): string {
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.input === undefined) return 'is required';
      if (issue.expected === 'number' && typeof issue.input === 'number' && Number.isNaN(issue.input)) return 'must be a number';
      return `must be ${typeNames[issue.expected] ?? issue.expected}`;
    }
    case 'too_small': {
      const min = String(issue.minimum);
      if (issue.origin === 'string') return issue.minimum === 1 ? 'must not be empty' : `must be at least ${min} characters`;
      if (issue.origin === 'array') return `needs at least ${min} item(s)`;
      return `must be ${issue.inclusive === false ? 'more than' : 'at least'} ${min}`;
    }
    case 'too_big': {
      const max = String(issue.maximum);
      if (issue.origin === 'string') return `must be at most ${max} characters`;
      if (issue.origin === 'array') return `takes at most ${max} item(s)`;
      return `must be ${issue.inclusive === false ? 'less than' : 'at most'} ${max}`;
    }
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_format':
      return issue.format === 'regex' ? 'has the wrong format' : `must be a valid ${issue.format}`;
    case 'unrecognized_keys':
      return `unknown option${issue.keys.length === 1 ? '' : 's'} ${issue.keys.map(flagName).join(', ')}`;
    case 'not_multiple_of':
      return `must be a multiple of ${String(issue.divisor)}`;
    default:
      return 'is not valid';
  }
}

/** `chunkSize` → `--chunk-size`. */
export function flagName(key: PropertyKey): string {
  return `--${String(key).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}
