import { Inject } from '@nestjs/common';
import { Args, ID, Mutation, Query, Resolver } from '@nestjs/graphql';
import { Requires } from '../../platform/access/policy.decorator.js';
import { CurrentPrincipal } from '../../platform/auth/principal.decorator.js';
import type { Principal } from '../../platform/auth/principal.js';
import { ApiTokenModel, CreateApiTokenInput, CreatedApiTokenModel } from './access.model.js';
import { TokensService } from './tokens.service.js';

@Resolver(() => ApiTokenModel)
export class TokensResolver {
  constructor(@Inject(TokensService) private readonly tokens: TokensService) {}

  @Query(() => [ApiTokenModel], {
    name: 'apiTokens',
    description: "The caller's tokens; with principalId (needs members:read), that principal's.",
  })
  @Requires('authenticated')
  listApiTokens(
    @CurrentPrincipal() p: Principal,
    @Args('principalId', { type: () => ID, nullable: true }) principalId: string | null,
  ): Promise<ApiTokenModel[]> {
    return this.tokens.list(p, principalId);
  }

  @Mutation(() => CreatedApiTokenModel, {
    description:
      'A personal token, or a service account token (needs members:manage). The secret is shown once.',
  })
  @Requires('authenticated')
  createApiToken(
    @CurrentPrincipal() p: Principal,
    @Args('input') input: CreateApiTokenInput,
  ): Promise<CreatedApiTokenModel> {
    return this.tokens.create(p, input);
  }

  @Mutation(() => ApiTokenModel, { description: "Revokes one's own token, or anyone's with members:manage." })
  @Requires('authenticated')
  revokeApiToken(
    @CurrentPrincipal() p: Principal,
    @Args('id', { type: () => ID }) id: string,
  ): Promise<ApiTokenModel> {
    return this.tokens.revoke(p, id);
  }
}
