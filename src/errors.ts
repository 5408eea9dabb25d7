/**
 * Errors with a stable code. The CLI maps them to exit codes; the TS client maps
 * Postgres errors onto them by SQLSTATE and the Tally code in the error's HINT.
 */
export class TallyError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TallyError';
    this.code = code;
  }
}

/** A bad command-line option or environment variable: the CLI exits with 2. */
export class UsageError extends TallyError {
  constructor(message: string) {
    super('invalid_usage', message);
    this.name = 'UsageError';
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
