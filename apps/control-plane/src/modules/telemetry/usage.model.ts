import { Field, Float, ID, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import { IsIn, IsNumber, IsOptional, Matches, Max, MaxLength, Min, MinLength } from 'class-validator';
import { Trim } from '../../platform/graphql/trim.js';

export enum IdleAction {
  /** Raise the alert only. */
  NOTIFY = 'NOTIFY',
  /** Raise the alert and cancel the job. */
  CANCEL = 'CANCEL',
}
registerEnumType(IdleAction, { name: 'IdleAction' });

export enum IdleAlertState {
  OPEN = 'OPEN',
  RESOLVED = 'RESOLVED',
}
registerEnumType(IdleAlertState, { name: 'IdleAlertState' });

@ObjectType()
export class UsageRow {
  @Field(() => ID, { nullable: true, description: 'Null: jobs outside any project.' }) projectId!:
    string | null;
  @Field(() => String, { nullable: true }) projectName!: string | null;
  @Field(() => ID, { nullable: true, description: 'Who submitted the jobs.' }) userId!: string | null;
  @Field(() => String, { nullable: true, description: 'Their email, or the service account’s name.' })
  user!: string | null;
  @Field() gpuModel!: string;
  @Field(() => Float, { description: 'GPU-hours the jobs held or used.' }) gpuHours!: number;
  @Field(() => Float, { description: 'Of those, hours below the idle threshold.' }) idleGpuHours!: number;
  @Field(() => Float) energyKwh!: number;
  @Field(() => Float, { nullable: true, description: 'Null: no price is set for this GPU model.' })
  pricePerGpuHour!: number | null;
  @Field(() => Float, { nullable: true }) cost!: number | null;
}

@ObjectType()
export class UsageTotals {
  @Field(() => Float) gpuHours!: number;
  @Field(() => Float) idleGpuHours!: number;
  @Field(() => Float) energyKwh!: number;
  @Field(() => Float, { description: 'Cost of the priced GPU-hours.' }) cost!: number;
  @Field(() => Float, { description: 'GPU-hours of models without a price.' }) unpricedGpuHours!: number;
}

@ObjectType({ description: 'GPU use per project, user and GPU model over whole minutes [from, to).' })
export class UsageReport {
  @Field(() => Date) from!: Date;
  @Field(() => Date) to!: Date;
  @Field() currency!: string;
  @Field(() => [UsageRow]) rows!: UsageRow[];
  @Field(() => UsageTotals) totals!: UsageTotals;
}

@ObjectType()
export class GpuPrice {
  @Field() model!: string;
  @Field(() => Float) pricePerGpuHour!: number;
}

@ObjectType()
export class TelemetrySettings {
  @Field(() => Float) idleThresholdPct!: number;
  @Field(() => Int) idleWindowMinutes!: number;
  @Field(() => IdleAction) idleAction!: IdleAction;
  @Field() currency!: string;
  @Field(() => [GpuPrice]) gpuPrices!: GpuPrice[];
}

@InputType()
export class UpdateTelemetrySettingsInput {
  @Field(() => Float, { nullable: true, description: 'GPUs below this utilisation are idle (0 < x ≤ 100).' })
  @IsOptional()
  @IsNumber()
  @Min(0.1)
  @Max(100)
  idleThresholdPct?: number;

  @Field(() => Int, { nullable: true, description: 'Idle for this long raises an alert (1 to 1440).' })
  @IsOptional()
  @Min(1)
  @Max(1440)
  idleWindowMinutes?: number;

  @Field(() => IdleAction, { nullable: true })
  @IsOptional()
  @IsIn(Object.values(IdleAction))
  idleAction?: IdleAction;

  @Field({ nullable: true, description: 'ISO 4217 code, e.g. USD.' })
  @IsOptional()
  @Matches(/^[A-Z]{3}$/, { message: 'currency must be an ISO 4217 code such as USD' })
  currency?: string;
}

@InputType()
export class SetGpuPriceInput {
  @Field({ description: 'The GPU model as its telemetry names it, e.g. "NVIDIA H100 80GB HBM3".' })
  @Trim()
  @MinLength(1)
  @MaxLength(128)
  model!: string;

  @Field(() => Float, {
    nullable: true,
    description: 'Per GPU-hour, in the currency; null removes the price.',
  })
  @IsOptional()
  @IsNumber()
  @Min(0)
  @Max(1_000_000)
  pricePerGpuHour?: number | null;
}

@ObjectType('IdleAlert')
export class IdleAlertModel {
  @Field(() => ID) id!: string;
  @Field(() => ID) jobId!: string;
  @Field(() => ID, { nullable: true }) agentId!: string | null;
  @Field(() => ID, { nullable: true }) projectId!: string | null;
  @Field(() => Int, { description: 'GPUs the job held in the window.' }) gpus!: number;
  @Field(() => Float) thresholdPct!: number;
  @Field(() => Int) windowMinutes!: number;
  @Field(() => Float, { nullable: true }) maxUtilizationPct!: number | null;
  @Field(() => Float, { nullable: true }) meanUtilizationPct!: number | null;
  @Field(() => Date) idleSince!: Date;
  @Field(() => Date) raisedAt!: Date;
  @Field(() => IdleAction) action!: IdleAction;
  @Field(() => IdleAlertState) state!: IdleAlertState;
  @Field(() => Date, { nullable: true }) resolvedAt!: Date | null;
  @Field(() => String, { nullable: true }) resolution!: string | null;
  @Field(() => Date, { nullable: true }) cancelRequestedAt!: Date | null;
}
