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
/** How many token → principal pairs the rate limiter remembers (most recent uses). */
const RATE_KEYS = 10_000;

@Injectable()
export class AuthService {
  /** Token hash → "organization:principal", filled by successful authentications. */
  private readonly principalOfToken = new Map<string, string>();

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
    const hash = hashSecret(token);
    // Outside any tenant: the migration's hearth_authenticate() is the one narrow cross-tenant read.
    const rows: TokenRow[] = await this.ds.query(
      `SELECT token_id, tenant_id, user_id, principal_kind, failure, scopes, project_id, bindings
         FROM hearth_authenticate($1)`,
      [hash],
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
    this.remember(hash.toString('base64url'), `${row.tenant_id}:${row.user_id}`);
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

  /**
   * The rate limit's key for a request, before it is authenticated: its organization and principal,
   * so a principal's many tokens share one budget. Known tokens are answered from memory; a token seen
   * for the first time here costs one lookup. An unknown token counts on its own; no token, per address.
   */
  async rateLimitKey(authorization: string | undefined, ip: string): Promise<string> {
    const token = authorization?.match(BEARER)?.[1];
    if (!token) return `ip:${ip}`;
    const hash = hashSecret(token);
    const key = hash.toString('base64url');
    let principal = this.principalOfToken.get(key);
    if (!principal) {
      const rows: { tenant_id: string; user_id: string; failure: string | null }[] = await this.ds.query(
        `SELECT tenant_id, user_id, failure FROM hearth_authenticate($1)`,
        [hash],
      );
      if (rows[0] && !rows[0].failure)
        this.remember(key, (principal = `${rows[0].tenant_id}:${rows[0].user_id}`));
    }
    return principal ? `principal:${principal}` : `token:${key}`;
  }

  private remember(tokenHash: string, principal: string) {
    this.principalOfToken.delete(tokenHash); // re-insert: Map order is recency
    this.principalOfToken.set(tokenHash, principal);
    if (this.principalOfToken.size > RATE_KEYS)
      this.principalOfToken.delete(this.principalOfToken.keys().next().value!);
  }
}
