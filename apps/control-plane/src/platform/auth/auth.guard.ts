import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { GqlExecutionContext, type GqlContextType } from '@nestjs/graphql';
import type { FastifyRequest } from 'fastify';
import { allows } from '../access/ability.js';
import { PermissionDeniedError } from '../access/access.errors.js';
import { POLICY, type Policy } from '../access/policy.decorator.js';
import { actorOf, AuditService } from '../audit/audit.service.js';
import { requestContext } from '../logging/request-context.js';
import { Transactions } from '../tenancy/transactions.js';
import { AuthService } from './auth.service.js';
import type { Principal } from './principal.js';

interface GqlContext {
  req?: FastifyRequest;
  principal?: Principal;
}

/**
 * Global guard: every GraphQL operation needs a valid bearer token (subscriptions authenticate once,
 * at connection_init) and the permission its resolver declares with @Requires. An operation with no
 * declared policy is a bug and is refused. A denial is audited. HTTP routes (health, metrics, agent
 * join) authenticate on their own terms.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    @Inject(AuthService) private readonly auth: AuthService,
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType<GqlContextType>() !== 'graphql') return true;
    const gql = GqlExecutionContext.create(context);
    const ctx = gql.getContext<GqlContext>();
    if (!ctx.principal) {
      ctx.principal = await this.auth.authenticate(ctx.req?.headers.authorization);
    }
    const p = ctx.principal;
    const rc = requestContext();
    if (rc) rc.tenantId = p.tenantId;

    const policy = this.reflector.get<Policy | undefined>(POLICY, context.getHandler());
    const operation = gql.getInfo<{ fieldName: string }>().fieldName;
    if (!policy) throw new Error(`operation ${operation} declares no policy (@Requires): refused`);
    if (policy === 'authenticated' || allows(p.ability, policy)) return true;
    await this.tx.tenant(p.tenantId, (m) =>
      this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'permission.denied',
        outcome: 'denied',
        changes: { operation, required: policy, roles: p.roles },
      }),
    );
    throw new PermissionDeniedError(policy);
  }
}
