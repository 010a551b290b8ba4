import { Requires } from '../../platform/access/policy.decorator.js';
import { Inject } from '@nestjs/common';
import { Args, ID, Int, Mutation, Query, Resolver } from '@nestjs/graphql';
import { CurrentPrincipal } from '../../platform/auth/principal.decorator.js';
import type { Principal } from '../../platform/auth/principal.js';
import { AgentModel, JoinToken } from './agent.model.js';
import { FleetService } from './fleet.service.js';

@Resolver(() => AgentModel)
export class FleetResolver {
  constructor(@Inject(FleetService) private readonly fleet: FleetService) {}

  @Query(() => [AgentModel], { description: "The organization's agents." })
  @Requires('agents:read')
  agents(@CurrentPrincipal() p: Principal): Promise<AgentModel[]> {
    return this.fleet.listAgents(p);
  }

  @Mutation(() => JoinToken, { description: 'A one-time token that enrolls one agent (hearth-agent join).' })
  @Requires('agents:enroll')
  createJoinToken(
    @CurrentPrincipal() p: Principal,
    @Args('ttlSeconds', { type: () => Int, nullable: true, defaultValue: 3600 }) ttlSeconds: number,
  ): Promise<JoinToken> {
    return this.fleet.createJoinToken(p, ttlSeconds);
  }

  @Mutation(() => AgentModel, { description: 'Revokes an agent: its credentials stop working at once.' })
  @Requires('agents:revoke')
  revokeAgent(
    @CurrentPrincipal() p: Principal,
    @Args('id', { type: () => ID }) id: string,
  ): Promise<AgentModel> {
    return this.fleet.revokeAgent(p, id);
  }
}
