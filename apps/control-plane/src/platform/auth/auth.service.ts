import { Inject, Injectable } from '@nestjs/common';
import { Transactions } from '../tenancy/transactions.js';
import { UnauthenticatedError } from '../errors/domain-error.js';
import { hashSecret } from './secrets.js';
import type { Principal } from './principal.js';

interface TokenRow {
  id: string;
  tenant_id: string;
  user_id: string;
  stale: boolean;
}

const BEARER = /^Bearer\s+(\S+)$/i;

@Injectable()
export class AuthService {
  constructor(@Inject(Transactions) private readonly tx: Transactions) {}

  /** Resolves an Authorization header to a principal, or throws UNAUTHENTICATED. */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    const token = authorization?.match(BEARER)?.[1];
    if (!token) throw new UnauthenticatedError('missing bearer token');
    // Token lookup precedes knowing the tenant, so it is one of the few system reads. Last use is
    // recorded at most once a minute per token, so authentication stays a read on the hot path.
    const rows = await this.tx.system(async (m) => {
      const found: TokenRow[] = await m.query(
        `SELECT id, tenant_id, user_id, last_used_at < now() - interval '1 minute' OR last_used_at IS NULL AS stale
           FROM api_tokens
          WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`,
        [hashSecret(token)],
      );
      if (found[0]?.stale)
        await m.query(`UPDATE api_tokens SET last_used_at = now() WHERE id = $1`, [found[0].id]);
      return found;
    });
    const row = rows[0];
    if (!row) throw new UnauthenticatedError();
    return { kind: 'user', tenantId: row.tenant_id, userId: row.user_id, tokenId: row.id };
  }
}
