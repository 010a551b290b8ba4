import { Field, Float, ID, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import {
  ArrayMaxSize,
  ArrayMinSize,
  ArrayUnique,
  IsInt,
  IsNotEmpty,
  IsOptional,
  IsUUID,
  Matches,
  Max,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';
import { Type } from 'class-transformer';
import { AgentModel } from '../fleet/agent.model.js';

export enum JobState {
  QUEUED = 'QUEUED',
  DISPATCHED = 'DISPATCHED',
  RUNNING = 'RUNNING',
  SUCCEEDED = 'SUCCEEDED',
  FAILED = 'FAILED',
  CANCELLED = 'CANCELLED',
  TIMED_OUT = 'TIMED_OUT',
}
registerEnumType(JobState, { name: 'JobState' });

export enum GpuVendor {
  NVIDIA = 'nvidia',
  AMD = 'amd',
}
registerEnumType(GpuVendor, { name: 'GpuVendor' });

export enum JobKind {
  /** Any program, run without a shell (sklearn, XGBoost, PyTorch, …). */
  COMMAND = 'COMMAND',
  /** The built-in tabular trainer; a success registers a model version. */
  TRAIN = 'TRAIN',
  /** Predictions for a dataset with a registered model, written on the agent. */
  BATCH_PREDICT = 'BATCH_PREDICT',
  /** A deployment's serving process (created by deployModel, not submitJob). */
  SERVE = 'SERVE',
}
registerEnumType(JobKind, { name: 'JobKind' });

@ObjectType()
export class EnvVar {
  @Field() name!: string;
  @Field() value!: string;
}

@ObjectType('TrainEpoch')
export class TrainEpochModel {
  @Field(() => Int) epoch!: number;
  @Field(() => Float) loss!: number;
  @Field(() => Float, { nullable: true }) valLoss!: number | null;
  @Field(() => Float, { nullable: true }) accuracy!: number | null;
  @Field(() => Float, { nullable: true }) auc!: number | null;
  @Field(() => Float, { nullable: true }) rmse!: number | null;
  @Field(() => Float, { nullable: true }) mae!: number | null;
}

export enum TrainTaskInput {
  REGRESSION = 'regression',
  BINARY = 'binary',
  MULTICLASS = 'multiclass',
}
registerEnumType(TrainTaskInput, { name: 'TrainTask' });

export enum TrainModelType {
  LINEAR = 'linear',
  LOGISTIC = 'logistic',
  MLP = 'mlp',
}
registerEnumType(TrainModelType, { name: 'TrainModelType' });

export enum DatasetFormat {
  CSV = 'csv',
  JSONL = 'jsonl',
}
registerEnumType(DatasetFormat, { name: 'DatasetFormat' });

@InputType({ description: 'The built-in tabular trainer. The dataset URI resolves only on the agent.' })
export class TrainJobInput {
  @Field({ description: 'The model the trained version is registered under (created if new).' })
  @Matches(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, { message: 'modelName must be 1-64 of A-Z a-z 0-9 _ . -' })
  modelName!: string;
  @Field({ description: 'e.g. file:///srv/data/churn.csv, under a data root the agent allows.' })
  @MaxLength(2048)
  datasetUri!: string;
  @Field(() => DatasetFormat, { nullable: true }) @IsOptional() datasetFormat?: DatasetFormat;
  @Field() @MaxLength(128) target!: string;
  @Field(() => [String], { nullable: true, description: 'Feature columns; omitted: all but the target.' })
  @IsOptional()
  @ArrayMaxSize(256)
  features?: string[];
  @Field(() => TrainTaskInput) task!: TrainTaskInput;
  @Field(() => TrainModelType) model!: TrainModelType;
  @Field(() => [Int], { nullable: true, description: 'MLP: units per hidden layer.' })
  @IsOptional()
  @ArrayMaxSize(8)
  hiddenLayers?: number[];
  @Field(() => Int, { nullable: true }) @IsOptional() epochs?: number;
  @Field(() => Int, { nullable: true }) @IsOptional() batchSize?: number;
  @Field(() => Float, { nullable: true }) @IsOptional() learningRate?: number;
  @Field(() => Float, { nullable: true }) @IsOptional() validationSplit?: number;
  @Field(() => Int, { nullable: true }) @IsOptional() seed?: number;
}

@InputType({ description: "Predictions for a dataset, written to the agent's artifact store." })
export class BatchPredictJobInput {
  @Field(() => ID) modelVersionId!: string;
  @Field({ description: 'e.g. file:///srv/data/to-score.csv, under a data root the agent allows.' })
  @MaxLength(2048)
  inputUri!: string;
  @Field(() => DatasetFormat, { nullable: true }) @IsOptional() inputFormat?: DatasetFormat;
  @Field(() => [String], {
    nullable: true,
    description: "Input columns in model input order; omitted: the model's features.",
  })
  @IsOptional()
  @ArrayMaxSize(256)
  features?: string[];
}

@ObjectType('Job')
export class JobModel {
  @Field(() => ID) id!: string;
  @Field(() => JobKind) kind!: JobKind;
  @Field(() => JobState) state!: JobState;
  @Field(() => ID, { nullable: true, description: 'The project it belongs to; null: the organization.' })
  projectId!: string | null;
  @Field(() => String, { nullable: true, description: 'Why the job is in its state (e.g. why it waits).' })
  stateReason!: string | null;
  @Field(() => [String], { nullable: true, description: 'COMMAND jobs: the program and arguments.' })
  command!: string[] | null;
  @Field(() => Int, { nullable: true }) exitCode!: number | null;
  @Field(() => Int, { description: 'Attempts made so far.' }) attempts!: number;
  @Field(() => Int) maxAttempts!: number;
  @Field(() => Int, { description: 'Whole GPUs the job holds on its agent (0: none).' }) gpus!: number;
  @Field(() => GpuVendor, { nullable: true, description: 'The GPU vendor it asked for (null: any).' })
  gpuVendor!: GpuVendor | null;
  @Field(() => Int, { nullable: true, description: 'Null for SERVE: a deployment runs until stopped.' })
  timeoutSeconds!: number | null;
  @Field(() => String, { nullable: true, description: 'TRAIN: the backend the agent trained on.' })
  backend!: string | null;
  @Field(() => [TrainEpochModel], { description: 'TRAIN: metrics per epoch, as the agent reported them.' })
  trainEpochs!: TrainEpochModel[];
  @Field(() => String, {
    nullable: true,
    description:
      "The job kind's input, as JSON (TRAIN: the trainer configuration; BATCH_PREDICT: model and input).",
  })
  spec!: string | null;
  @Field(() => String, {
    nullable: true,
    description:
      'What a successful TRAIN or BATCH_PREDICT produced, as JSON: metadata only (URIs, hashes, counts).',
  })
  result!: string | null;
  @Field(() => AgentModel, { nullable: true, description: 'The agent of the current or last attempt.' })
  agent!: { id: string } | null;
  @Field(() => String, {
    description: 'The last lines of output (bounded); the full log stays on the agent.',
  })
  logTail!: string;
  @Field(() => Date) createdAt!: Date;
  @Field(() => Date, { nullable: true }) startedAt!: Date | null;
  @Field(() => Date, { nullable: true }) finishedAt!: Date | null;
}

@ObjectType()
export class JobEdge {
  @Field() cursor!: string;
  @Field(() => JobModel) node!: JobModel;
}

@ObjectType()
export class PageInfo {
  @Field() hasNextPage!: boolean;
  @Field(() => String, { nullable: true }) endCursor!: string | null;
}

@ObjectType()
export class JobConnection {
  @Field(() => [JobEdge]) edges!: JobEdge[];
  @Field(() => PageInfo) pageInfo!: PageInfo;
}

@InputType()
export class EnvVarInput {
  @Field()
  @Matches(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: 'env name must match [A-Za-z_][A-Za-z0-9_]*' })
  @MaxLength(128)
  name!: string;
  @Field()
  @MaxLength(8192)
  value!: string;
}

@InputType()
export class LabelInput {
  @Field()
  @Matches(/^[a-z0-9][a-z0-9._-]{0,62}$/, {
    message: 'label key must be lowercase letters, digits, . _ - (max 63)',
  })
  key!: string;
  @Field()
  @MaxLength(63)
  value!: string;
}

@InputType()
export class AgentSelectorInput {
  @Field(() => [ID], { nullable: true, description: 'Run only on one of these agents.' })
  @IsOptional()
  @IsUUID('all', { each: true, message: 'agentIds must be agent ids' })
  @ArrayMaxSize(100)
  agentIds?: string[];

  @Field(() => [LabelInput], { nullable: true, description: 'Run only on agents carrying all these labels.' })
  @IsOptional()
  @ValidateNested({ each: true })
  @Type(() => LabelInput)
  @ArrayMaxSize(32)
  @ArrayUnique((l: LabelInput) => l?.key, { message: 'agentSelector label keys must be unique' })
  labels?: LabelInput[];
}

@InputType()
export class SubmitJobInput {
  @Field(() => JobKind) kind!: JobKind;

  @Field(() => [String], {
    nullable: true,
    description: 'COMMAND: program and arguments, run without a shell.',
  })
  @IsOptional()
  @ArrayMinSize(1, { message: 'command must name a program' })
  @ArrayMaxSize(256)
  @MaxLength(4096, { each: true })
  command?: string[];

  @Field(() => TrainJobInput, { nullable: true, description: 'TRAIN: the trainer configuration.' })
  @IsOptional()
  @ValidateNested()
  @Type(() => TrainJobInput)
  train?: TrainJobInput;

  @Field(() => BatchPredictJobInput, {
    nullable: true,
    description: 'BATCH_PREDICT: model version and input.',
  })
  @IsOptional()
  @ValidateNested()
  @Type(() => BatchPredictJobInput)
  batchPredict?: BatchPredictJobInput;

  @Field(() => [EnvVarInput], { nullable: true })
  @IsOptional()
  @ValidateNested({ each: true })
  @Type(() => EnvVarInput)
  @ArrayMaxSize(256)
  @ArrayUnique((e: EnvVarInput) => e?.name, { message: 'env names must be unique' })
  env?: EnvVarInput[];

  @Field(() => Int, { nullable: true, defaultValue: 3600 })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(7 * 24 * 3600)
  timeoutSeconds?: number;

  @Field(() => Int, { nullable: true, defaultValue: 3, description: 'Tries when an agent is lost mid-job.' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(20)
  maxAttempts?: number;

  @Field(() => AgentSelectorInput, { nullable: true })
  @IsOptional()
  @ValidateNested()
  @Type(() => AgentSelectorInput)
  agentSelector?: AgentSelectorInput;

  @Field(() => Int, {
    nullable: true,
    description: 'Whole GPUs the job needs on one agent (0 to 64; default 0). It sees only those.',
  })
  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(64)
  gpus?: number;

  @Field(() => GpuVendor, { nullable: true, description: 'Only GPUs of this vendor (default: any).' })
  @IsOptional()
  gpuVendor?: GpuVendor;

  @Field(() => ID, {
    nullable: true,
    description: "The project to run it in; omitted: the token's project, else the organization.",
  })
  @IsOptional()
  @IsNotEmpty({ message: 'projectId must not be empty: leave it out instead' })
  projectId?: string;
}

@InputType()
export class JobFilter {
  @Field(() => [JobState], { nullable: true })
  @IsOptional()
  @ArrayMaxSize(20)
  states?: JobState[];

  @Field(() => ID, { nullable: true })
  @IsOptional()
  @IsUUID('all')
  agentId?: string;

  @Field(() => ID, { nullable: true })
  @IsOptional()
  @IsUUID('all')
  projectId?: string;
}
