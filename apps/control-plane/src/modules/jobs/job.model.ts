import { Field, ID, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsInt,
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

export enum JobKind {
  COMMAND = 'COMMAND',
}
registerEnumType(JobKind, { name: 'JobKind' });

@ObjectType()
export class EnvVar {
  @Field() name!: string;
  @Field() value!: string;
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
  @Field(() => [String]) command!: string[];
  @Field(() => Int, { nullable: true }) exitCode!: number | null;
  @Field(() => Int, { description: 'Attempts made so far.' }) attempts!: number;
  @Field(() => Int) maxAttempts!: number;
  @Field(() => Int) timeoutSeconds!: number;
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
  labels?: LabelInput[];
}

@InputType()
export class SubmitJobInput {
  @Field(() => JobKind) kind!: JobKind;

  @Field(() => [String], { description: 'Program and arguments, run without a shell.' })
  @ArrayMinSize(1, { message: 'command must name a program' })
  @ArrayMaxSize(256)
  @MaxLength(4096, { each: true })
  command!: string[];

  @Field(() => [EnvVarInput], { nullable: true })
  @IsOptional()
  @ValidateNested({ each: true })
  @Type(() => EnvVarInput)
  @ArrayMaxSize(256)
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

  @Field(() => ID, {
    nullable: true,
    description: "The project to run it in; omitted: the token's project, else the organization.",
  })
  @IsOptional()
  projectId?: string;
}

@InputType()
export class JobFilter {
  @Field(() => [JobState], { nullable: true })
  @IsOptional()
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
