import { Inject } from '@nestjs/common';
import { Args, ID, Mutation, Query, Resolver } from '@nestjs/graphql';
import { Requires } from '../../platform/access/policy.decorator.js';
import { CurrentPrincipal } from '../../platform/auth/principal.decorator.js';
import type { Principal } from '../../platform/auth/principal.js';
import { DeployModelInput, DeploymentModel } from './deployment.model.js';
import { DeploymentsService } from './deployments.service.js';

@Resolver(() => DeploymentModel)
export class DeploymentsResolver {
  constructor(@Inject(DeploymentsService) private readonly service: DeploymentsService) {}

  @Mutation(() => DeploymentModel, {
    description:
      'Serves a model version on an agent over the Open Inference Protocol; for a served model, replaces its ' +
      'version without failing requests in flight.',
  })
  @Requires('models:deploy')
  deployModel(
    @CurrentPrincipal() p: Principal,
    @Args('input') input: DeployModelInput,
  ): Promise<DeploymentModel> {
    return this.service.deploy(p, input);
  }

  @Mutation(() => DeploymentModel, { description: 'Stops serving: the agent unloads the model.' })
  @Requires('models:deploy')
  undeployModel(
    @CurrentPrincipal() p: Principal,
    @Args('id', { type: () => ID }) id: string,
  ): Promise<DeploymentModel> {
    return this.service.undeploy(p, id);
  }

  @Query(() => [DeploymentModel])
  @Requires('models:read')
  deployments(
    @CurrentPrincipal() p: Principal,
    @Args('includeStopped', { nullable: true, defaultValue: false }) includeStopped: boolean,
  ): Promise<DeploymentModel[]> {
    return this.service.list(p, includeStopped);
  }

  @Query(() => DeploymentModel)
  @Requires('models:read')
  deployment(
    @CurrentPrincipal() p: Principal,
    @Args('id', { type: () => ID }) id: string,
  ): Promise<DeploymentModel> {
    return this.service.get(p, id);
  }
}
