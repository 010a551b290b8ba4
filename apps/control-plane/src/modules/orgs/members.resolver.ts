import { Inject } from '@nestjs/common';
import { Args, ID, Mutation, Query, Resolver } from '@nestjs/graphql';
import { Requires } from '../../platform/access/policy.decorator.js';
import { CurrentPrincipal } from '../../platform/auth/principal.decorator.js';
import type { Principal } from '../../platform/auth/principal.js';
import {
  ChangeRoleInput,
  CreateServiceAccountInput,
  InvitationModel,
  InviteMemberInput,
  MemberModel,
  RoleBindingModel,
  ServiceAccountModel,
} from './access.model.js';
import { MembersService } from './members.service.js';
import { PrincipalsService } from './principals.service.js';
import { ServiceAccountsService } from './service-accounts.service.js';

@Resolver()
export class MembersResolver {
  constructor(
    @Inject(MembersService) private readonly members: MembersService,
    @Inject(PrincipalsService) private readonly principals: PrincipalsService,
    @Inject(ServiceAccountsService) private readonly serviceAccounts: ServiceAccountsService,
  ) {}

  @Query(() => [MemberModel], { name: 'members' })
  @Requires('members:read')
  listMembers(
    @CurrentPrincipal() p: Principal,
    @Args('includeRemoved', { nullable: true, defaultValue: false }) includeRemoved: boolean,
  ): Promise<MemberModel[]> {
    return this.members.list(p, includeRemoved);
  }

  @Mutation(() => InvitationModel, {
    description: 'Invites a person with a role; the invitation is shown once.',
  })
  @Requires('members:manage')
  inviteMember(
    @CurrentPrincipal() p: Principal,
    @Args('input') input: InviteMemberInput,
  ): Promise<InvitationModel> {
    return this.members.invite(p, input);
  }

  @Mutation(() => RoleBindingModel, {
    description:
      'Gives a member or service account one role at a scope, replacing the roles they hold there.',
  })
  @Requires('members:manage')
  changeMemberRole(
    @CurrentPrincipal() p: Principal,
    @Args('input') input: ChangeRoleInput,
  ): Promise<RoleBindingModel> {
    return this.principals.changeRole(p, input);
  }

  @Mutation(() => RoleBindingModel)
  @Requires('members:manage')
  removeRoleBinding(
    @CurrentPrincipal() p: Principal,
    @Args('id', { type: () => ID }) id: string,
  ): Promise<RoleBindingModel> {
    return this.principals.removeBinding(p, id);
  }

  @Mutation(() => MemberModel, { description: 'Removes a member: their tokens and sessions stop at once.' })
  @Requires('members:manage')
  removeMember(
    @CurrentPrincipal() p: Principal,
    @Args('id', { type: () => ID }) id: string,
  ): Promise<MemberModel> {
    return this.members.remove(p, id);
  }

  @Query(() => [ServiceAccountModel], { name: 'serviceAccounts' })
  @Requires('members:read')
  listServiceAccounts(@CurrentPrincipal() p: Principal): Promise<ServiceAccountModel[]> {
    return this.serviceAccounts.list(p);
  }

  @Mutation(() => ServiceAccountModel)
  @Requires('members:manage')
  createServiceAccount(
    @CurrentPrincipal() p: Principal,
    @Args('input') input: CreateServiceAccountInput,
  ): Promise<ServiceAccountModel> {
    return this.serviceAccounts.create(p, input);
  }

  @Mutation(() => ServiceAccountModel, { description: 'Deletes a service account; its tokens stop at once.' })
  @Requires('members:manage')
  deleteServiceAccount(
    @CurrentPrincipal() p: Principal,
    @Args('id', { type: () => ID }) id: string,
  ): Promise<ServiceAccountModel> {
    return this.serviceAccounts.delete(p, id);
  }
}
