/** Tally's TypeScript API: database resolution, migrations, the worker and status. */
export { loadConfig, redactUrl, type TallyConfig } from './config.ts';
export { resolveDatabase, type ResolvedDatabase } from './database.ts';
export { startEmbedded, type EmbeddedOptions, type EmbeddedServer } from './embedded.ts';
export { TallyError, UsageError } from './errors.ts';
export { installScript, migrationFiles, readSchemaVersion, runMigrations, type MigrateResult } from './migrate.ts';
export { SCHEDULED_JOBS, type ScheduledJob } from './schedules.ts';
export { formatStatus, readStatus, type Status } from './status.ts';
export { startWorker, type Worker } from './worker.ts';
