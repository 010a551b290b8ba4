import { Inject } from '@nestjs/common';
import { Args, ID, Mutation, Query, Resolver } from '@nestjs/graphql';
import { Requires } from '../../platform/access/policy.decorator.js';
import { CurrentPrincipal } from '../../platform/auth/principal.decorator.js';
import type { Principal } from '../../platform/auth/principal.js';
import { CreateRoleInput, RoleModel, UpdateRoleInput } from './access.model.js';
import { RolesService } from './roles.service.js';

@Resolver(() => RoleModel)
export class RolesResolver {
  constructor(@Inject(RolesService) private readonly roles: RolesService) {}

  @Query(() => [RoleModel], {
    name: 'roles',
    description: 'Built-in and custom roles, with their permissions.',
  })
  @Requires('authenticated')
  listRoles(@CurrentPrincipal() p: Principal): Promise<RoleModel[]> {
    return this.roles.list(p);
  }

  @Mutation(() => RoleModel)
  @Requires('roles:manage')
  createRole(@CurrentPrincipal() p: Principal, @Args('input') input: CreateRoleInput): Promise<RoleModel> {
    return this.roles.create(p, input);
  }

  @Mutation(() => RoleModel)
  @Requires('roles:manage')
  updateRole(@CurrentPrincipal() p: Principal, @Args('input') input: UpdateRoleInput): Promise<RoleModel> {
    return this.roles.update(p, input);
  }

  @Mutation(() => RoleModel)
  @Requires('roles:manage')
  deleteRole(
    @CurrentPrincipal() p: Principal,
    @Args('id', { type: () => ID }) id: string,
  ): Promise<RoleModel> {
    return this.roles.delete(p, id);
  }
}
