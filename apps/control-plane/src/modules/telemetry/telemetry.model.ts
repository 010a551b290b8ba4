import { Field, Float, ID, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import { IsOptional } from 'class-validator';

export enum TelemetryResolution {
  /** Every sample, as the agent took it. */
  RAW = 'RAW',
  MINUTE = 'MINUTE',
  HOUR = 'HOUR',
}
registerEnumType(TelemetryResolution, { name: 'TelemetryResolution' });

@InputType({
  description: 'A time range [from, to) and the resolution to read it at (omitted: chosen from the range).',
})
export class TelemetryRangeInput {
  @Field(() => Date) from!: Date;
  @Field(() => Date) to!: Date;
  @Field(() => TelemetryResolution, { nullable: true })
  @IsOptional()
  resolution?: TelemetryResolution;
}

@ObjectType({
  description: 'GPU use over one bucket (or one raw sample), summed over the GPUs the series covers.',
})
export class GpuPoint {
  @Field(() => Date) at!: Date;
  @Field(() => Int) samples!: number;
  @Field(() => Float, { description: 'GPU time in the bucket, in seconds (two GPUs for a minute: 120).' })
  gpuSeconds!: number;
  @Field(() => Float, { description: 'GPUs on average over the bucket (gpuSeconds / bucket length).' })
  gpus!: number;
  @Field(() => Float, { nullable: true, description: 'Time-weighted mean utilisation, percent.' })
  utilizationPct!: number | null;
  @Field(() => Float, { nullable: true }) utilizationMaxPct!: number | null;
  @Field(() => Float, { nullable: true, description: 'Mean memory in use per GPU, MiB.' })
  memoryUsedMiB!: number | null;
  @Field(() => Float, { nullable: true, description: 'Mean power draw of the GPUs together, watts.' })
  powerW!: number | null;
  @Field(() => Float, { description: 'Energy the GPUs drew in the bucket, watt-hours.' })
  energyWh!: number;
  @Field(() => Float, { nullable: true }) temperatureMaxC!: number | null;
}

@ObjectType({ description: 'A host over one bucket (or one raw sample).' })
export class HostPoint {
  @Field(() => Date) at!: Date;
  @Field(() => Int) samples!: number;
  @Field(() => Float, { nullable: true }) cpuPct!: number | null;
  @Field(() => Float, { nullable: true }) cpuMaxPct!: number | null;
  @Field(() => Float, { nullable: true }) memoryUsedMiB!: number | null;
  @Field(() => Float, { nullable: true }) memoryTotalMiB!: number | null;
  @Field(() => Float, { nullable: true }) diskReadBps!: number | null;
  @Field(() => Float, { nullable: true }) diskWriteBps!: number | null;
  @Field(() => Float, { nullable: true }) netRxBps!: number | null;
  @Field(() => Float, { nullable: true }) netTxBps!: number | null;
  @Field(() => Int, { description: 'Samples the agent dropped (its buffer was full) before these.' })
  dropped!: number;
}

@ObjectType('TelemetryGpu', { description: 'A GPU of an agent, as its telemetry describes it.' })
export class TelemetryGpuModel {
  @Field(() => ID) agentId!: string;
  @Field() vendor!: string;
  @Field(() => Int, { description: "The vendor tool's index (nvidia-smi, rocm-smi)." }) index!: number;
  @Field(() => String, { nullable: true }) uuid!: string | null;
  @Field(() => String, { nullable: true }) name!: string | null;
  @Field(() => Int, { nullable: true }) memoryTotalMiB!: number | null;
}

@ObjectType()
export class GpuSeries {
  @Field(() => TelemetryGpuModel) gpu!: TelemetryGpuModel;
  @Field(() => [GpuPoint]) points!: GpuPoint[];
}

@ObjectType()
export class AgentTelemetrySeries {
  @Field(() => ID) agentId!: string;
  @Field(() => TelemetryResolution) resolution!: TelemetryResolution;
  @Field(() => Date) from!: Date;
  @Field(() => Date) to!: Date;
  @Field(() => [HostPoint]) host!: HostPoint[];
  @Field(() => [GpuSeries]) gpus!: GpuSeries[];
}

@ObjectType({ description: 'The GPUs a job (or a project’s jobs) used, together and one by one.' })
export class UsageSeries {
  @Field(() => ID) id!: string;
  @Field(() => TelemetryResolution) resolution!: TelemetryResolution;
  @Field(() => Date) from!: Date;
  @Field(() => Date) to!: Date;
  @Field(() => [GpuPoint], { description: 'All its GPUs together, per bucket.' }) points!: GpuPoint[];
  @Field(() => [GpuSeries], { description: 'Each GPU it used.' }) gpus!: GpuSeries[];
}

@ObjectType()
export class ModelUtilization {
  @Field() model!: string;
  @Field(() => Int) gpusReporting!: number;
  @Field(() => Int) gpusAllocated!: number;
  @Field(() => Int) gpusBusy!: number;
  @Field(() => Float, { nullable: true }) meanUtilizationPct!: number | null;
}

@ObjectType({ description: "The organization's GPUs now (their latest sample, at most two minutes old)." })
export class FleetUtilization {
  @Field(() => Date) at!: Date;
  @Field(() => Int, { description: 'GPUs of the agents online now, from their heartbeats.' })
  gpusTotal!: number;
  @Field(() => Int, { description: 'GPUs with a recent sample.' }) gpusReporting!: number;
  @Field(() => Int, { description: 'GPUs a job runs on or holds.' }) gpusAllocated!: number;
  @Field(() => Int, { description: 'GPUs at or above the idle threshold.' }) gpusBusy!: number;
  @Field(() => Float, { nullable: true }) meanUtilizationPct!: number | null;
  @Field(() => Float, { description: 'Power the reporting GPUs draw together, watts.' }) powerW!: number;
  @Field(() => Int) agentsReporting!: number;
  @Field(() => [ModelUtilization]) byModel!: ModelUtilization[];
}
