import { Field, ID, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsEmail,
  IsInt,
  IsNotEmpty,
  IsOptional,
  IsUUID,
  Length,
  Matches,
  Max,
  MaxLength,
  Min,
} from 'class-validator';
import { Trim } from '../../platform/graphql/trim.js';

export enum PrincipalStatus {
  INVITED = 'INVITED',
  ACTIVE = 'ACTIVE',
  REMOVED = 'REMOVED',
}
registerEnumType(PrincipalStatus, { name: 'PrincipalStatus' });

@ObjectType('RoleBinding', {
  description: 'A role held by a member or service account, organization-wide or in one project.',
})
export class RoleBindingModel {
  @Field(() => ID) id!: string;
  @Field(() => ID) principalId!: string;
  @Field({ description: 'The role: a built-in role or a custom role of the organization.' }) role!: string;
  @Field(() => ID, {
    nullable: true,
    description: 'The project it applies to; null: the whole organization.',
  })
  projectId!: string | null;
  @Field(() => Date) createdAt!: Date;
}

@ObjectType('Member', { description: 'A person in the organization.' })
export class MemberModel {
  @Field(() => ID) id!: string;
  @Field() email!: string;
  @Field(() => PrincipalStatus) status!: PrincipalStatus;
  @Field(() => [RoleBindingModel]) roleBindings!: RoleBindingModel[];
  @Field(() => Date) createdAt!: Date;
}

@ObjectType('Invitation')
export class InvitationModel {
  @Field(() => MemberModel) member!: MemberModel;
  @Field({
    description:
      'Shown once: the invitee accepts with POST /api/v1/invitations/accept { token } and receives an API token.',
  })
  token!: string;
  @Field(() => Date) expiresAt!: Date;
}

@ObjectType('ServiceAccount', { description: 'A non-human principal for CI and automation.' })
export class ServiceAccountModel {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field() description!: string;
  @Field(() => PrincipalStatus) status!: PrincipalStatus;
  @Field(() => [RoleBindingModel]) roleBindings!: RoleBindingModel[];
  @Field(() => Date) createdAt!: Date;
}

@ObjectType('Role')
export class RoleModel {
  @Field(() => ID, { description: 'A custom role id, or the name of a built-in role.' }) id!: string;
  @Field() name!: string;
  @Field() builtIn!: boolean;
  @Field() description!: string;
  @Field(() => [String]) permissions!: string[];
}

@ObjectType('ApiToken', { description: 'An API token; its secret was shown once, at creation.' })
export class ApiTokenModel {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field(() => ID, { description: 'The member or service account it acts for.' }) principalId!: string;
  @Field(() => [String], {
    nullable: true,
    description: "The permissions it may use; null: all of its principal's.",
  })
  scopes!: string[] | null;
  @Field(() => ID, { nullable: true, description: 'The one project it may act in; null: any.' })
  projectId!: string | null;
  @Field(() => Date, { nullable: true }) expiresAt!: Date | null;
  @Field(() => Date, { nullable: true, description: 'Last successful use (recorded at most once a minute).' })
  lastUsedAt!: Date | null;
  @Field(() => Date, { nullable: true }) revokedAt!: Date | null;
  @Field(() => Date) createdAt!: Date;
}

@ObjectType('CreatedApiToken')
export class CreatedApiTokenModel {
  @Field({ description: 'The secret, shown this once; only its hash is stored.' }) token!: string;
  @Field(() => ApiTokenModel) apiToken!: ApiTokenModel;
}

const ROLE_NAME = /^[a-z][a-z0-9_-]{1,62}$/;

@InputType()
export class InviteMemberInput {
  @Field()
  @IsEmail({}, { message: 'email must be an email address' })
  @MaxLength(320)
  email!: string;

  @Field({ description: 'A built-in or custom role name.' })
  @MaxLength(63)
  role!: string;

  @Field(() => ID, { nullable: true, description: 'Bind the role in this project only.' })
  @IsOptional()
  @IsNotEmpty({ message: 'projectId must not be empty: leave it out instead' })
  projectId?: string;
}

@InputType()
export class ChangeRoleInput {
  @Field(() => ID, { description: 'A member or service account.' })
  principalId!: string;

  @Field({ description: 'The role they will hold at this scope, replacing the ones they hold there.' })
  @MaxLength(63)
  role!: string;

  @Field(() => ID, { nullable: true, description: 'The project; omitted: the organization.' })
  @IsOptional()
  @IsNotEmpty({ message: 'projectId must not be empty: leave it out instead' })
  projectId?: string;
}

@InputType()
export class CreateServiceAccountInput {
  @Field()
  @Trim()
  @Length(1, 100, { message: 'name must be 1 to 100 characters' })
  name!: string;

  @Field({ nullable: true })
  @IsOptional()
  @MaxLength(1000)
  description?: string;
}

@InputType()
export class CreateRoleInput {
  @Field()
  @Matches(ROLE_NAME, {
    message: 'role name must be 2-63 lowercase letters, digits, _ or -, starting with a letter',
  })
  name!: string;

  @Field({ nullable: true })
  @IsOptional()
  @MaxLength(1000)
  description?: string;

  @Field(() => [String], { description: 'Catalog permissions, e.g. jobs:submit.' })
  @ArrayMinSize(1, { message: 'a role needs at least one permission' })
  @ArrayMaxSize(100)
  permissions!: string[];
}

@InputType()
export class UpdateRoleInput {
  @Field(() => ID) id!: string;

  @Field({ nullable: true })
  @IsOptional()
  @MaxLength(1000)
  description?: string;

  @Field(() => [String], { nullable: true })
  @IsOptional()
  @ArrayMinSize(1, { message: 'a role needs at least one permission' })
  @ArrayMaxSize(100)
  permissions?: string[];
}

@InputType()
export class CreateApiTokenInput {
  @Field()
  @Trim()
  @Length(1, 100, { message: 'name must be 1 to 100 characters' })
  name!: string;

  @Field(() => [String], {
    nullable: true,
    description: "The permissions it may use (a subset of its principal's); omitted: all of them.",
  })
  @IsOptional()
  @ArrayMinSize(1, { message: 'scopes, when given, must name at least one permission' })
  @ArrayMaxSize(100)
  scopes?: string[];

  @Field(() => ID, { nullable: true, description: 'Confine the token to this project.' })
  @IsOptional()
  @IsNotEmpty({ message: 'projectId must not be empty: leave it out instead' })
  projectId?: string;

  @Field(() => Int, {
    nullable: true,
    defaultValue: 90 * 24 * 3600,
    description: 'Lifetime; at most one year.',
  })
  @IsOptional()
  @IsInt()
  @Min(60, { message: 'expiresInSeconds must be at least 60' })
  @Max(366 * 24 * 3600, { message: 'expiresInSeconds must be at most one year' })
  expiresInSeconds?: number;

  @Field(() => ID, {
    nullable: true,
    description: 'Mint it for this service account (needs members:manage).',
  })
  @IsOptional()
  @IsUUID('all', { message: 'serviceAccountId must be a service account id' })
  serviceAccountId?: string;
}
