import { Field, Float, ID, Int, ObjectType, registerEnumType } from '@nestjs/graphql';

export enum AgentState {
  ONLINE = 'ONLINE',
  OFFLINE = 'OFFLINE',
  REVOKED = 'REVOKED',
}
registerEnumType(AgentState, { name: 'AgentState' });

@ObjectType()
export class Gpu {
  @Field() vendor!: string;
  @Field() name!: string;
  @Field(() => Float, { nullable: true, description: 'Bytes of GPU memory, when the tool reports it.' })
  memoryBytes!: number | null;
}

@ObjectType()
export class Label {
  @Field() key!: string;
  @Field() value!: string;
}

@ObjectType('Agent')
export class AgentModel {
  @Field(() => ID) id!: string;
  @Field(() => AgentState) state!: AgentState;
  @Field() hostname!: string;
  @Field() os!: string;
  @Field() arch!: string;
  @Field(() => Int) cpus!: number;
  @Field(() => Float) memoryBytes!: number;
  @Field(() => [Gpu]) gpus!: Gpu[];
  @Field() agentVersion!: string;
  @Field(() => [Label]) labels!: Label[];
  @Field(() => Int, { description: 'Jobs it runs at once, as of its last heartbeat.' }) capacity!: number;
  @Field(() => Date, { nullable: true }) lastHeartbeatAt!: Date | null;
  @Field(() => Date) createdAt!: Date;
  @Field(() => Date, { nullable: true }) revokedAt!: Date | null;
}

@ObjectType()
export class JoinToken {
  @Field({ description: 'Shown once; only its hash is stored.' }) token!: string;
  @Field(() => Date) expiresAt!: Date;
}
