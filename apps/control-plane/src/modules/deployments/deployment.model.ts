import { Field, Float, ID, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import { Type } from 'class-transformer';
import { IsOptional, ValidateNested } from 'class-validator';
import { AgentSelectorInput } from '../jobs/job.model.js';
import { ModelVersionModel } from '../models/model.model.js';

export enum DeploymentState {
  /** Waiting for an agent, or loading the model. */
  PENDING = 'PENDING',
  /** Serving: the endpoint answers the Open Inference Protocol. */
  READY = 'READY',
  /** The agent could not serve it (see stateReason). */
  FAILED = 'FAILED',
  STOPPED = 'STOPPED',
}
registerEnumType(DeploymentState, { name: 'DeploymentState' });

@ObjectType('DeploymentMetrics', {
  description:
    'Request counts since the version started serving, and latencies over the last window of the requests the model answered (refused requests, 4xx, are counted but not timed): numbers only.',
})
export class DeploymentMetricsModel {
  @Field(() => Int) windowSeconds!: number;
  @Field(() => Int) requests!: number;
  @Field(() => Int, { description: 'Requests answered with an error status (4xx and 5xx).' }) errors!: number;
  @Field(() => Int, {
    nullable: true,
    description: "Of the errors, the clients' mistakes (4xx); null from an agent that predates the count.",
  })
  clientErrors!: number | null;
  @Field(() => Float, { nullable: true }) p50Ms!: number | null;
  @Field(() => Float, { nullable: true }) p95Ms!: number | null;
  @Field(() => Float, { nullable: true }) p99Ms!: number | null;
  @Field(() => Date) at!: Date;
}

@ObjectType('Deployment')
export class DeploymentModel {
  @Field(() => ID) id!: string;
  @Field(() => ID) modelId!: string;
  @Field() modelName!: string;
  @Field(() => ModelVersionModel) version!: ModelVersionModel;
  @Field(() => DeploymentState) state!: DeploymentState;
  @Field(() => String, {
    nullable: true,
    description: 'FAILED: why. PENDING: what it waits for (an agent; one that stopped and gave it back).',
  })
  stateReason!: string | null;
  @Field(() => String, {
    nullable: true,
    description:
      "Base URL of the Open Inference Protocol endpoint, inside the customer's network (when READY).",
  })
  endpoint!: string | null;
  @Field(() => String, { nullable: true, description: 'cuda or cpu.' }) executionProvider!: string | null;
  @Field(() => ID, { description: 'The SERVE job that runs it now.' }) jobId!: string;
  @Field(() => ID, { nullable: true }) agentId!: string | null;
  @Field(() => DeploymentMetricsModel, { nullable: true }) metrics!: DeploymentMetricsModel | null;
  @Field(() => Date) createdAt!: Date;
  @Field(() => Date) updatedAt!: Date;
  @Field(() => Date, { nullable: true }) stoppedAt!: Date | null;
}

@InputType()
export class DeployModelInput {
  @Field(() => ID) versionId!: string;

  @Field(() => AgentSelectorInput, {
    nullable: true,
    description: 'Where to serve it; a redeploy of a served model stays on its agent.',
  })
  @IsOptional()
  @ValidateNested()
  @Type(() => AgentSelectorInput)
  agentSelector?: AgentSelectorInput;
}
