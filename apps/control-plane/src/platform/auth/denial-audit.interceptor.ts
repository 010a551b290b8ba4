import {
  Inject,
  Injectable,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import { GqlExecutionContext, type GqlContextType } from '@nestjs/graphql';
import { catchError, from, mergeMap, throwError, type Observable } from 'rxjs';
import { actorOf, AuditService } from '../audit/audit.service.js';
import { DomainError } from '../errors/domain-error.js';
import { Transactions } from '../tenancy/transactions.js';
import type { Principal } from './principal.js';

/**
 * The guard audits the denials it decides. Finer decisions are made inside services (a permission in
 * one project only, an escalation, a rule like "not your own role"), after the guard let the call in:
 * this interceptor audits those, in a transaction of its own, since the refused change rolled back.
 */
@Injectable()
export class DenialAuditInterceptor implements NestInterceptor {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType<GqlContextType>() !== 'graphql') return next.handle();
    const gql = GqlExecutionContext.create(context);
    return next.handle().pipe(
      catchError((err: unknown) => {
        const p = gql.getContext<{ principal?: Principal }>().principal;
        if (!(err instanceof DomainError) || err.code !== 'FORBIDDEN' || !p) return throwError(() => err);
        const operation = gql.getInfo<{ fieldName: string }>().fieldName;
        return from(
          this.tx.tenant(p.tenantId, (m) =>
            this.audit.record(m, p.tenantId, actorOf(p), {
              action: 'permission.denied',
              outcome: 'denied',
              changes: { operation, reason: err.message, roles: p.roles },
            }),
          ),
        ).pipe(mergeMap(() => throwError(() => err)));
      }),
    );
  }
}
