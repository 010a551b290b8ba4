import { Inject } from '@nestjs/common';
import { Args, Context, ID, Mutation, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { Requires } from '../../platform/access/policy.decorator.js';
import { CurrentPrincipal } from '../../platform/auth/principal.decorator.js';
import type { Principal } from '../../platform/auth/principal.js';
import { ModelModel, ModelStage, ModelVersionModel, RegisterModelVersionInput } from './model.model.js';
import { ModelsService } from './models.service.js';

@Resolver(() => ModelModel)
export class ModelsResolver {
  constructor(@Inject(ModelsService) private readonly registry: ModelsService) {}

  @Query(() => [ModelModel], { description: 'Registered models the caller can read.' })
  @Requires('models:read')
  models(
    @CurrentPrincipal() p: Principal,
    @Args('projectId', { type: () => ID, nullable: true }) projectId: string | null,
  ): Promise<ModelModel[]> {
    return this.registry.list(p, projectId);
  }

  @Query(() => ModelModel)
  @Requires('models:read')
  model(@CurrentPrincipal() p: Principal, @Args('id', { type: () => ID }) id: string): Promise<ModelModel> {
    return this.registry.get(p, id);
  }

  @Query(() => ModelVersionModel)
  @Requires('models:read')
  modelVersion(
    @CurrentPrincipal() p: Principal,
    @Args('id', { type: () => ID }) id: string,
  ): Promise<ModelVersionModel> {
    return this.registry.getVersion(p, id);
  }

  @Mutation(() => ModelVersionModel, {
    description: "Registers an ONNX file in the customer's artifact store (e.g. exported by a COMMAND job).",
  })
  @Requires('models:register')
  registerModelVersion(
    @CurrentPrincipal() p: Principal,
    @Args('input') input: RegisterModelVersionInput,
  ): Promise<ModelVersionModel> {
    return this.registry.registerVersion(p, input);
  }

  @Mutation(() => ModelVersionModel, {
    description: 'Moves a version to a stage (NONE, STAGING, PRODUCTION, ARCHIVED).',
  })
  @Requires('models:promote')
  transitionModelVersionStage(
    @CurrentPrincipal() p: Principal,
    @Args('versionId', { type: () => ID }) versionId: string,
    @Args('stage', { type: () => ModelStage }) stage: ModelStage,
    @Args('archiveExisting', {
      nullable: true,
      defaultValue: false,
      description: 'Promoting to PRODUCTION: archive the versions in production now.',
    })
    archiveExisting: boolean,
  ): Promise<ModelVersionModel> {
    return this.registry.transitionStage(p, versionId, stage, archiveExisting);
  }

  @ResolveField(() => [ModelVersionModel], { description: 'Newest first.' })
  versions(
    @CurrentPrincipal() p: Principal,
    @Parent() model: ModelModel,
    @Context() ctx: { modelVersions?: Promise<Map<string, ModelVersionModel[]>>; modelIds?: string[] },
  ): Promise<ModelVersionModel[]> {
    // The models of one response are loaded together, DataLoader-style: ids gathered until the
    // current round of resolvers has run (setImmediate), then one query for all their versions.
    ctx.modelIds ??= [];
    ctx.modelIds.push(model.id);
    ctx.modelVersions ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() =>
      this.registry.versionsOf(p, ctx.modelIds!),
    );
    return ctx.modelVersions.then((byModel) => byModel.get(model.id) ?? []);
  }
}
