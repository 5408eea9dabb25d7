/** Tally's TypeScript API: database resolution, migrations, the worker, status, the client (with the dashboard reads and asUser) and the UsageTracker. */
export { loadConfig, redactUrl, type TallyConfig } from './database/config.ts';
export { resolveDatabase, type ResolvedDatabase } from './database/resolve.ts';
export { startEmbedded, type EmbeddedOptions, type EmbeddedServer } from './database/embedded.ts';
export { TallyError, UsageError } from './errors.ts';
export { installScript, migrationFiles, readSchemaVersion, runMigrations, type MigrateResult } from './database/migrate.ts';
export { SCHEDULED_JOBS, type ScheduledJob } from './worker/jobs.ts';
export { formatStatus, readStatus, type Status } from './worker/status.ts';
export { startWorker, type Worker } from './worker/worker.ts';
export { asUser, createTally, tallyApi, type Tally, type TallyApi, type TallyOptions } from './client/client.ts';
export type { Account, AccountMember } from './client/accounts.ts';
export {
  ANALYTICS_METRICS, type AnalyticsFilters, type AnalyticsMetric, type AnalyticsMetrics, type BreakdownDimension, type BreakdownInput,
  type BreakdownMeasure, type BreakdownRow, type ComparePeriodsInput, type DashboardDay, type FilterValue, type Granularity,
  type PeriodComparison, type PeriodSummary, type TopEndpoint, type TopEndpointsInput, type UsageHistoryMonth, type UsageSeriesBucket,
  type UsageSeriesInput,
} from './client/analytics.ts';
export type { ApiKey, CreatedApiKey, VerifiedApiKey } from './client/api-keys.ts';
export { EVENT_FIELDS, toWireEvent, type UsageEvent } from './client/events.ts';
export type { EnsurePartitionsResult, PurgeResult, Setting } from './client/maintenance.ts';
export type { AttachedMeter, MeterMapping } from './client/meters.ts';
export type { ModelPrice, RepriceResult } from './client/prices.ts';
export {
  differingMetrics, type Grain, type RebuiltBuckets, type RecomputeRollupsResult, type RollupMismatch, type RollupStatusResult,
  type RunRollupsResult, type UnpricedModel, type UsageMetrics, type VoidEventsResult,
} from './client/rollups.ts';
export type { IdempotencyConflict, IngestResult, Rejection, Role } from './client/schemas.ts';
export type { CallOptions, Queryable } from './client/sql.ts';
export { withTransaction, type TransactionClient } from './database/transaction.ts';
export {
  ApiKeyError, BatchTooLargeError, ConflictError, ConnectionError, DatabaseError, ERROR_TABLE, ForbiddenError, InvalidEventError,
  InvalidInputError, InvalidParameterError, InvalidResponseError, NotFoundError, isTransient, toTallyError,
} from './client/errors.ts';
export {
  QueueFullError, UsageTracker, type OverflowPolicy, type SentEvent, type TrackerDrop, type TrackerFailure, type TrackerRejection,
  type TrackerSource, type TrackerStats, type UsageTrackerOptions,
} from './ingest/tracker.ts';
export {
  DEFAULT_CHUNK_SIZE, importFile, rejectedQuery, type ImportFormat, type ImportOptions, type ImportProgress, type ImportRejection,
  type ImportSummary,
} from './ingest/import.ts';
export { TALLY_VERSION } from './version.ts';
