import { Requires } from '../access/policy.decorator.js';
import { Inject } from '@nestjs/common';
import { Args, Int, Query, Resolver } from '@nestjs/graphql';
import { CurrentPrincipal } from '../auth/principal.decorator.js';
import type { Principal } from '../auth/principal.js';
import { InvalidInputError } from '../errors/domain-error.js';
import { Transactions } from '../tenancy/transactions.js';
import { AuditChainVerification, AuditEventConnection, AuditEventFilter } from './audit.model.js';
import { AuditService } from './audit.service.js';

interface Row {
  id: string;
  seq: string;
  occurred_at: Date;
  actor_type: string;
  actor_id: string | null;
  actor_ip: string | null;
  actor_user_agent: string | null;
  actor_token_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  outcome: string;
  request_id: string | null;
  changes: unknown;
  hash: Buffer;
}

@Resolver()
export class AuditResolver {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
  ) {}

  @Query(() => AuditEventConnection, { description: "The organization's audit trail, newest first." })
  @Requires('audit:read')
  async auditEvents(
    @CurrentPrincipal() p: Principal,
    @Args('first', { type: () => Int, nullable: true, defaultValue: 50 }) first: number,
    @Args('after', { type: () => String, nullable: true }) after: string | null,
    // Optional, not `| null`: the declared type must be the class for the ValidationPipe to run.
    @Args('filter', { type: () => AuditEventFilter, nullable: true }) filter?: AuditEventFilter,
  ): Promise<AuditEventConnection> {
    if (first < 1 || first > 500) throw new InvalidInputError('first must be between 1 and 500');
    const before = after == null ? null : cursorSeq(after);
    const rows: Row[] = await this.tx.tenant(p.tenantId, (m) =>
      m.query(
        `SELECT * FROM audit_events
          WHERE ($1::bigint IS NULL OR seq < $1)
            AND ($3::text[] IS NULL OR action = ANY($3))
            AND ($4::text IS NULL OR actor_id = $4::text)
            AND ($5::text IS NULL OR target_id = $5::text)
            AND ($6::timestamptz IS NULL OR occurred_at >= $6)
            AND ($7::timestamptz IS NULL OR occurred_at < $7)
          ORDER BY seq DESC LIMIT $2`,
        [
          before,
          first + 1,
          filter?.actions?.length ? filter.actions : null,
          filter?.actorId ?? null,
          filter?.targetId ?? null,
          filter?.since ?? null,
          filter?.until ?? null,
        ],
      ),
    );
    const edges = rows.slice(0, first).map((r) => ({
      cursor: Buffer.from(`audit:${r.seq}`).toString('base64url'),
      node: {
        id: r.id,
        seq: Number(r.seq),
        occurredAt: r.occurred_at,
        actor: {
          type: r.actor_type,
          id: r.actor_id,
          ip: r.actor_ip,
          userAgent: r.actor_user_agent,
          tokenId: r.actor_token_id,
        },
        action: r.action,
        target: r.target_type && r.target_id ? { type: r.target_type, id: r.target_id } : null,
        outcome: r.outcome,
        requestId: r.request_id,
        changes: JSON.stringify(r.changes),
        hash: r.hash.toString('hex'),
      },
    }));
    return { edges, pageInfo: { hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null } };
  }

  @Query(() => AuditChainVerification, { description: 'Checks the hash chain; names the first broken link.' })
  @Requires('audit:read')
  verifyAuditChain(@CurrentPrincipal() p: Principal): Promise<AuditChainVerification> {
    return this.audit.verify(p.tenantId);
  }
}

/** The sequence number in a cursor this resolver returned (base64url of `audit:<seq>`). */
function cursorSeq(cursor: string): string {
  const m = /^audit:([1-9][0-9]{0,17})$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!m || Buffer.from(`audit:${m[1]}`).toString('base64url') !== cursor)
    throw new InvalidInputError('after is not a cursor returned by auditEvents');
  return m[1];
}
