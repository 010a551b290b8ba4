import { Module } from '@nestjs/common';
import { JobsModule } from '../jobs/jobs.module.js';
import { CLOCK, systemClock } from './clock.js';
import { JobsIdleCanceller } from './idle-canceller.js';
import { IdleAlertsService } from './idle-alerts.service.js';
import { IDLE_CANCELLER, IdleDetector } from './idle-detector.service.js';
import { TelemetryRetention } from './retention.service.js';
import { TelemetryRollups } from './rollups.service.js';
import { TelemetryConsumer } from './telemetry.consumer.js';
import { TelemetryResolver } from './telemetry.resolver.js';
import { TelemetryScheduler } from './telemetry-scheduler.service.js';
import { TelemetrySeriesService } from './telemetry-series.service.js';
import { TelemetrySettingsService } from './telemetry-settings.service.js';
import { TelemetryWriter } from './telemetry-writer.service.js';
import { UsageReportService } from './usage-report.service.js';

/** Utilisation telemetry (issue 5): ingest, rollups, retention, idle detection and the GraphQL API. */
@Module({
  imports: [JobsModule],
  providers: [
    { provide: CLOCK, useValue: systemClock },
    { provide: IDLE_CANCELLER, useClass: JobsIdleCanceller },
    TelemetryWriter,
    TelemetryConsumer,
    TelemetryRollups,
    TelemetryRetention,
    IdleDetector,
    TelemetryScheduler,
    TelemetrySeriesService,
    TelemetrySettingsService,
    UsageReportService,
    IdleAlertsService,
    TelemetryResolver,
  ],
  exports: [TelemetryConsumer, TelemetryScheduler],
})
export class TelemetryModule {}
