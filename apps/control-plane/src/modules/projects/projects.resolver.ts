import { Inject } from '@nestjs/common';
import { Args, ID, Mutation, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { allowsOn } from '../../platform/access/ability.js';
import { PROJECT_PERMISSIONS } from '../../platform/access/permissions.js';
import { Requires } from '../../platform/access/policy.decorator.js';
import { CurrentPrincipal } from '../../platform/auth/principal.decorator.js';
import type { Principal } from '../../platform/auth/principal.js';
import { CreateProjectInput, ProjectModel } from './project.model.js';
import { ProjectsService } from './projects.service.js';

@Resolver(() => ProjectModel)
export class ProjectsResolver {
  constructor(@Inject(ProjectsService) private readonly service: ProjectsService) {}

  @Mutation(() => ProjectModel)
  @Requires('projects:manage')
  createProject(
    @CurrentPrincipal() p: Principal,
    @Args('input') input: CreateProjectInput,
  ): Promise<ProjectModel> {
    return this.service.create(p, input);
  }

  @Query(() => [ProjectModel], { description: 'The projects the caller can see.' })
  @Requires('projects:read')
  projects(@CurrentPrincipal() p: Principal): Promise<ProjectModel[]> {
    return this.service.list(p);
  }

  @Query(() => ProjectModel)
  @Requires('projects:read')
  project(
    @CurrentPrincipal() p: Principal,
    @Args('id', { type: () => ID }) id: string,
  ): Promise<ProjectModel> {
    return this.service.get(p, id);
  }

  @ResolveField(() => [String], {
    description: 'The permissions the caller holds on objects in this project (agrees with the checks).',
  })
  myPermissions(@CurrentPrincipal() p: Principal, @Parent() project: ProjectModel): string[] {
    return PROJECT_PERMISSIONS.filter((perm) => allowsOn(p.ability, perm, project.id));
  }
}
