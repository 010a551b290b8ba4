import { Inject, Injectable } from '@nestjs/common';
import { validate as isUuid, v7 as uuidv7 } from 'uuid';
import { allows } from '../../platform/access/ability.js';
import { PermissionDeniedError } from '../../platform/access/access.errors.js';
import { isPermission } from '../../platform/access/permissions.js';
import { actorOf, AuditService } from '../../platform/audit/audit.service.js';
import type { Principal } from '../../platform/auth/principal.js';
import { newSecret } from '../../platform/auth/secrets.js';
import { Sessions } from '../../platform/auth/sessions.js';
import { changedRows } from '../../platform/database/returning.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { ProjectsService } from '../projects/projects.service.js';
import type { ApiTokenModel, CreateApiTokenInput, CreatedApiTokenModel } from './access.model.js';
import { ApiTokenNotFoundError, PrincipalNotFoundError, UnknownPermissionError } from './orgs.errors.js';
import { PrincipalsService } from './principals.service.js';
import { assertTokenWithinCaller, bindingsOf } from './role-bindings.js';

interface TokenRow {
  id: string;
  name: string;
  user_id: string;
  scopes: string[] | null;
  project_id: string | null;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
  created_at: Date;
}
const COLUMNS = 'id, name, user_id, scopes, project_id, expires_at, last_used_at, revoked_at, created_at';

const toModel = (r: TokenRow): ApiTokenModel => ({
  id: r.id,
  name: r.name,
  principalId: r.user_id,
  scopes: r.scopes,
  projectId: r.project_id,
  expiresAt: r.expires_at,
  lastUsedAt: r.last_used_at,
  revokedAt: r.revoked_at,
  createdAt: r.created_at,
});

/** Personal tokens and service-account tokens: scoped, optionally confined to a project, expiring. */
@Injectable()
export class TokensService {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(ProjectsService) private readonly projects: ProjectsService,
    @Inject(PrincipalsService) private readonly principals: PrincipalsService,
    @Inject(Sessions) private readonly sessions: Sessions,
  ) {}

  /**
   * Mints a token for the caller, or for a service account (needs members:manage). Whatever the token
   * could do must be within what the caller can do now, with the token they are calling with.
   */
  async create(p: Principal, input: CreateApiTokenInput): Promise<CreatedApiTokenModel> {
    const unknown = (input.scopes ?? []).filter((s) => !isPermission(s));
    if (unknown.length > 0) throw new UnknownPermissionError(unknown);
    const { secret, hash } = newSecret('hrt');
    return this.tx.tenant(p.tenantId, async (m) => {
      const principalId = input.serviceAccountId ?? p.userId;
      if (input.serviceAccountId) {
        const sa = await this.principals.require(m, input.serviceAccountId);
        if (sa.kind !== 'service_account') throw new PrincipalNotFoundError(input.serviceAccountId);
        if (!allows(p.ability, 'members:manage')) throw new PermissionDeniedError('members:manage');
      }
      const projectId = input.projectId ?? null;
      if (projectId) await this.projects.require(m, projectId);
      const scopes = input.scopes ? [...new Set(input.scopes)].sort() : null;
      assertTokenWithinCaller(p, await bindingsOf(m, [principalId]), { scopes, projectId });
      const id = uuidv7();
      const [row]: TokenRow[] = await m.query(
        `INSERT INTO api_tokens (id, tenant_id, user_id, token_hash, name, scopes, project_id, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9)) RETURNING ${COLUMNS}`,
        [
          id,
          p.tenantId,
          principalId,
          hash,
          input.name, // trimmed by the input type
          scopes,
          projectId,
          p.userId,
          input.expiresInSeconds ?? 90 * 24 * 3600,
        ],
      );
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'api_token.create',
        target: { type: 'api_token', id },
        changes: { principalId, name: row.name, scopes, projectId, expiresAt: row.expires_at },
      });
      return { token: secret, apiToken: toModel(row) };
    });
  }

  /** The caller's own tokens, or (with members:read) another principal's. */
  async list(p: Principal, principalId: string | null): Promise<ApiTokenModel[]> {
    const whose = principalId ?? p.userId;
    return this.tx.tenant(p.tenantId, async (m) => {
      if (whose !== p.userId) {
        // Existence first: another organization's id is NOT_FOUND whatever the caller's permissions.
        await this.principals.require(m, whose);
        if (!allows(p.ability, 'members:read')) throw new PermissionDeniedError('members:read');
      }
      const rows: TokenRow[] = await m.query(
        `SELECT ${COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY id DESC LIMIT 1000`,
        [whose],
      );
      return rows.map(toModel);
    });
  }

  /** Revokes one's own token, or (with members:manage) anyone's in the organization. Immediate. */
  async revoke(p: Principal, id: string): Promise<ApiTokenModel> {
    if (!isUuid(id)) throw new ApiTokenNotFoundError(id);
    const token = await this.tx.tenant(p.tenantId, async (m) => {
      const [found]: TokenRow[] = await m.query(
        `SELECT ${COLUMNS} FROM api_tokens WHERE id = $1 FOR UPDATE`,
        [id],
      );
      if (!found) throw new ApiTokenNotFoundError(id);
      if (found.user_id !== p.userId && !allows(p.ability, 'members:manage'))
        throw new PermissionDeniedError('members:manage');
      if (found.revoked_at) return found;
      const [row] = await changedRows<TokenRow>(
        m,
        `UPDATE api_tokens SET revoked_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
        [id],
      );
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'api_token.revoke',
        target: { type: 'api_token', id },
        changes: { principalId: found.user_id, name: found.name },
      });
      return row;
    });
    this.sessions.revoke({ tenantId: p.tenantId, tokenIds: [id] });
    return toModel(token);
  }
}
