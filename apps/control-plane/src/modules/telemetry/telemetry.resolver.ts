import { Inject } from '@nestjs/common';
import { Args, ID, Int, Mutation, Query, Resolver } from '@nestjs/graphql';
import { Requires } from '../../platform/access/policy.decorator.js';
import { CurrentPrincipal } from '../../platform/auth/principal.decorator.js';
import type { Principal } from '../../platform/auth/principal.js';
import { IdleAlertsService } from './idle-alerts.service.js';
import { TelemetrySeriesService } from './telemetry-series.service.js';
import { TelemetrySettingsService } from './telemetry-settings.service.js';
import {
  AgentTelemetrySeries,
  FleetUtilization,
  TelemetryRangeInput,
  UsageSeries,
} from './telemetry.model.js';
import { UsageReportService } from './usage-report.service.js';
import {
  IdleAlertModel,
  IdleAlertState,
  SetGpuPriceInput,
  TelemetrySettings,
  UpdateTelemetrySettingsInput,
  UsageReport,
} from './usage.model.js';

@Resolver()
export class TelemetryResolver {
  constructor(
    @Inject(TelemetrySeriesService) private readonly series: TelemetrySeriesService,
    @Inject(UsageReportService) private readonly usage: UsageReportService,
    @Inject(TelemetrySettingsService) private readonly settings: TelemetrySettingsService,
    @Inject(IdleAlertsService) private readonly alerts: IdleAlertsService,
  ) {}

  @Query(() => FleetUtilization, { description: "The organization's GPUs now. Also needs agents:read." })
  @Requires('telemetry:read')
  fleetUtilization(@CurrentPrincipal() p: Principal): Promise<FleetUtilization> {
    return this.series.fleet(p);
  }

  @Query(() => AgentTelemetrySeries, {
    description: 'An agent’s host and GPUs over time. Also needs agents:read.',
  })
  @Requires('telemetry:read')
  agentTelemetry(
    @CurrentPrincipal() p: Principal,
    @Args('agentId', { type: () => ID }) agentId: string,
    @Args('range') range: TelemetryRangeInput,
    @Args('gpuUuid', { type: () => String, nullable: true, description: 'Only this GPU.' })
    gpuUuid: string | null,
  ): Promise<AgentTelemetrySeries> {
    return this.series.agent(p, agentId, range, gpuUuid);
  }

  @Query(() => UsageSeries, { description: 'The GPUs a job used, over time.' })
  @Requires('telemetry:read')
  jobTelemetry(
    @CurrentPrincipal() p: Principal,
    @Args('jobId', { type: () => ID }) jobId: string,
    @Args('range') range: TelemetryRangeInput,
  ): Promise<UsageSeries> {
    return this.series.job(p, jobId, range);
  }

  @Query(() => UsageSeries, { description: 'The GPUs a project’s jobs used, over time.' })
  @Requires('telemetry:read')
  projectTelemetry(
    @CurrentPrincipal() p: Principal,
    @Args('projectId', { type: () => ID }) projectId: string,
    @Args('range') range: TelemetryRangeInput,
  ): Promise<UsageSeries> {
    return this.series.project(p, projectId, range);
  }

  @Query(() => UsageReport)
  @Requires('telemetry:read')
  usageReport(
    @CurrentPrincipal() p: Principal,
    @Args('from', { type: () => Date }) from: Date,
    @Args('to', { type: () => Date }) to: Date,
  ): Promise<UsageReport> {
    return this.usage.report(p, from, to);
  }

  @Query(() => String, { description: 'The usage report as CSV (RFC 4180, a header line first).' })
  @Requires('telemetry:read')
  usageReportCsv(
    @CurrentPrincipal() p: Principal,
    @Args('from', { type: () => Date }) from: Date,
    @Args('to', { type: () => Date }) to: Date,
  ): Promise<string> {
    return this.usage.csv(p, from, to);
  }

  @Query(() => TelemetrySettings)
  @Requires('telemetry:read')
  telemetrySettings(@CurrentPrincipal() p: Principal): Promise<TelemetrySettings> {
    return this.settings.get(p);
  }

  @Query(() => [IdleAlertModel], { description: 'Jobs whose GPUs were held but idle, newest first.' })
  @Requires('telemetry:read')
  idleAlerts(
    @CurrentPrincipal() p: Principal,
    @Args('state', { type: () => IdleAlertState, nullable: true }) state: IdleAlertState | null,
    @Args('first', { type: () => Int, nullable: true, defaultValue: 50 }) first: number,
  ): Promise<IdleAlertModel[]> {
    return this.alerts.list(p, state, first);
  }

  @Mutation(() => TelemetrySettings, { description: 'The idle policy and currency of the organization.' })
  @Requires('telemetry:manage')
  updateTelemetrySettings(
    @CurrentPrincipal() p: Principal,
    @Args('input') input: UpdateTelemetrySettingsInput,
  ): Promise<TelemetrySettings> {
    return this.settings.update(p, input);
  }

  @Mutation(() => TelemetrySettings, {
    description: 'Sets (or, with no price, removes) a GPU model’s price.',
  })
  @Requires('telemetry:manage')
  setGpuPrice(
    @CurrentPrincipal() p: Principal,
    @Args('input') input: SetGpuPriceInput,
  ): Promise<TelemetrySettings> {
    return this.settings.setGpuPrice(p, input);
  }
}
