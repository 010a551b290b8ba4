import { Field, ID, InputType, Int, ObjectType } from '@nestjs/graphql';
import { ArrayMaxSize, IsIn, IsOptional, IsUUID } from 'class-validator';
import { AUDIT_ACTIONS } from './audit.service.js';

@ObjectType()
export class AuditActorModel {
  @Field() type!: string;
  @Field(() => String, { nullable: true }) id!: string | null;
  @Field(() => String, { nullable: true }) ip!: string | null;
  @Field(() => String, { nullable: true }) userAgent!: string | null;
  @Field(() => String, { nullable: true }) tokenId!: string | null;
}

@ObjectType()
export class AuditTargetModel {
  @Field() type!: string;
  @Field() id!: string;
}

@ObjectType('AuditEvent')
export class AuditEventModel {
  @Field(() => ID) id!: string;
  @Field(() => Int, { description: 'Position in the organization’s hash chain, from 1.' }) seq!: number;
  @Field(() => Date, { description: 'Database clock.' }) occurredAt!: Date;
  @Field(() => AuditActorModel) actor!: AuditActorModel;
  @Field() action!: string;
  @Field(() => AuditTargetModel, { nullable: true }) target!: AuditTargetModel | null;
  @Field() outcome!: string;
  @Field(() => String, { nullable: true }) requestId!: string | null;
  @Field({ description: 'What changed, as JSON; secrets redacted.' }) changes!: string;
  @Field({ description: 'sha256, hex.' }) hash!: string;
}

@ObjectType()
export class AuditEventEdge {
  @Field() cursor!: string;
  @Field(() => AuditEventModel) node!: AuditEventModel;
}

@ObjectType()
export class AuditPageInfo {
  @Field() hasNextPage!: boolean;
  @Field(() => String, { nullable: true }) endCursor!: string | null;
}

@ObjectType()
export class AuditEventConnection {
  @Field(() => [AuditEventEdge]) edges!: AuditEventEdge[];
  @Field(() => AuditPageInfo) pageInfo!: AuditPageInfo;
}

@ObjectType()
export class AuditChainVerification {
  @Field() ok!: boolean;
  @Field(() => Int) checked!: number;
  @Field(() => Int, { nullable: true }) firstBrokenSeq!: number | null;
  @Field(() => String, { nullable: true }) reason!: string | null;
}

@InputType()
export class AuditEventFilter {
  @Field(() => [String], { nullable: true, description: 'Only these actions (the event catalog).' })
  @IsOptional()
  @ArrayMaxSize(50)
  @IsIn(AUDIT_ACTIONS, { each: true, message: 'actions must be audit actions: $constraint1' })
  actions?: string[];

  @Field(() => ID, {
    nullable: true,
    description: 'Only events by this actor (member, service account, agent).',
  })
  @IsOptional()
  @IsUUID('all')
  actorId?: string;

  @Field(() => ID, { nullable: true, description: 'Only events about this object.' })
  @IsOptional()
  @IsUUID('all')
  targetId?: string;

  @Field(() => Date, { nullable: true, description: 'Only events at or after this time.' })
  @IsOptional()
  since?: Date;

  @Field(() => Date, { nullable: true, description: 'Only events before this time.' })
  @IsOptional()
  until?: Date;
}
