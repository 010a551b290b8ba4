import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { DataSource } from 'typeorm';
import { buildAbility } from '../access/ability.js';
import { effectiveGrants, type BindingRow } from '../access/grants.js';
import { AuditService } from '../audit/audit.service.js';
import { UnauthenticatedError } from '../errors/domain-error.js';
import { LOGGER } from '../logging/logging.module.js';
import { authFailures } from '../metrics/metrics.js';
import { Transactions } from '../tenancy/transactions.js';
import { hashSecret } from './secrets.js';
import type { Principal } from './principal.js';

interface TokenRow {
  token_id: string;
  tenant_id: string;
  user_id: string;
  principal_kind: 'user' | 'service_account';
  failure: string | null;
  scopes: string[] | null;
  project_id: string | null;
  bindings: BindingRow[];
}

const BEARER = /^Bearer\s+(\S+)$/i;

@Injectable()
export class AuthService {
  constructor(
    @Inject(DataSource) private readonly ds: DataSource,
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  /**
   * Resolves an Authorization header to a principal, or throws UNAUTHENTICATED. A failed attempt with
   * a token that belongs to an organization (revoked, expired, its principal removed) is audited in
   * that organization; one with an unknown token belongs to no organization and is logged and counted.
   */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    const token = authorization?.match(BEARER)?.[1];
    if (!token) {
      authFailures.inc({ reason: 'missing' });
      throw new UnauthenticatedError('missing bearer token');
    }
    // Outside any tenant: the migration's hearth_authenticate() is the one narrow cross-tenant read.
    const rows: TokenRow[] = await this.ds.query(
      `SELECT token_id, tenant_id, user_id, principal_kind, failure, scopes, project_id, bindings
         FROM hearth_authenticate($1)`,
      [hashSecret(token)],
    );
    const row = rows[0];
    if (!row) {
      authFailures.inc({ reason: 'unknown' });
      this.log.warn({ event: 'auth.failed', reason: 'unknown token' }, 'authentication failed');
      throw new UnauthenticatedError();
    }
    if (row.failure) {
      authFailures.inc({ reason: row.failure });
      await this.tx.tenant(row.tenant_id, (m) =>
        this.audit.record(
          m,
          row.tenant_id,
          { type: row.principal_kind, id: row.user_id, tokenId: row.token_id },
          {
            action: 'auth.failed',
            outcome: 'failure',
            target: { type: 'api_token', id: row.token_id },
            changes: { reason: row.failure },
          },
        ),
      );
      throw new UnauthenticatedError();
    }
    const grants = effectiveGrants(row.bindings, { scopes: row.scopes, projectId: row.project_id });
    return {
      kind: row.principal_kind,
      tenantId: row.tenant_id,
      userId: row.user_id,
      tokenId: row.token_id,
      roles: [...new Set(row.bindings.map((b) => b.role))].sort(),
      grants,
      ability: buildAbility(grants),
      tokenProjectId: row.project_id,
    };
  }
}
