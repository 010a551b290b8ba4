import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { buildAbility } from '../access/ability.js';
import { permissionsOf } from '../access/permissions.js';
import { UnauthenticatedError } from '../errors/domain-error.js';
import { hashSecret } from './secrets.js';
import type { Principal } from './principal.js';

interface TokenRow {
  token_id: string;
  tenant_id: string;
  user_id: string;
  roles: string[];
}

const BEARER = /^Bearer\s+(\S+)$/i;

@Injectable()
export class AuthService {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  /** Resolves an Authorization header to a principal, or throws UNAUTHENTICATED. */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    const token = authorization?.match(BEARER)?.[1];
    if (!token) throw new UnauthenticatedError('missing bearer token');
    // Outside any tenant: the migration's hearth_authenticate() is the one narrow cross-tenant read.
    const rows: TokenRow[] = await this.ds.query(
      `SELECT token_id, tenant_id, user_id, roles FROM hearth_authenticate($1)`,
      [hashSecret(token)],
    );
    const row = rows[0];
    if (!row) throw new UnauthenticatedError();
    const permissions = permissionsOf(row.roles);
    return {
      kind: 'user',
      tenantId: row.tenant_id,
      userId: row.user_id,
      tokenId: row.token_id,
      roles: row.roles,
      permissions,
      ability: buildAbility(permissions),
    };
  }
}
