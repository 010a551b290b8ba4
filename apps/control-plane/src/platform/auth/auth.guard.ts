import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { GqlExecutionContext, type GqlContextType } from '@nestjs/graphql';
import type { FastifyRequest } from 'fastify';
import { requestContext } from '../logging/request-context.js';
import { AuthService } from './auth.service.js';
import type { Principal } from './principal.js';

interface GqlContext {
  req?: FastifyRequest;
  principal?: Principal;
}

/**
 * Global guard: every GraphQL operation needs a valid bearer token (subscriptions authenticate once,
 * at connection_init). HTTP routes (health, metrics, agent join) authenticate on their own terms.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(@Inject(AuthService) private readonly auth: AuthService) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType<GqlContextType>() !== 'graphql') return true;
    const ctx = GqlExecutionContext.create(context).getContext<GqlContext>();
    if (!ctx.principal) {
      ctx.principal = await this.auth.authenticate(ctx.req?.headers.authorization);
    }
    const rc = requestContext();
    if (rc) rc.tenantId = ctx.principal.tenantId;
    return true;
  }
}
