import { Inject, Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import { assertMayConfer } from '../../platform/access/escalation.js';
import { actorOf, AuditService } from '../../platform/audit/audit.service.js';
import type { Principal } from '../../platform/auth/principal.js';
import { hashSecret, newSecret } from '../../platform/auth/secrets.js';
import { Sessions } from '../../platform/auth/sessions.js';
import { changedRows } from '../../platform/database/returning.js';
import { onUniqueViolation } from '../../platform/database/unique-violation.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { ProjectsService } from '../projects/projects.service.js';
import {
  PrincipalStatus,
  type InvitationModel,
  type InviteMemberInput,
  type MemberModel,
} from './access.model.js';
import { ConflictError, InvitationInvalidError, PrincipalNotFoundError } from './orgs.errors.js';
import { PrincipalsService, type PrincipalRow } from './principals.service.js';
import {
  assertMayTouch,
  assertNotSelf,
  assertOwnerRemains,
  bindingModelsOf,
  bindingsOf,
  lockOwners,
  resolveRole,
  type BindingRecord,
} from './role-bindings.js';

const INVITATION_TTL_SECONDS = 7 * 24 * 3600;

function toMember(row: PrincipalRow, bindings: readonly BindingRecord[]): MemberModel {
  return {
    id: row.id,
    email: row.email!,
    status: row.status as PrincipalStatus,
    createdAt: row.created_at,
    roleBindings: bindingModelsOf(bindings, row.id),
  };
}

export interface AcceptedInvitation {
  organizationId: string;
  userId: string;
  /** Shown once; only its hash is stored. */
  token: string;
}

@Injectable()
export class MembersService {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(ProjectsService) private readonly projects: ProjectsService,
    @Inject(PrincipalsService) private readonly principals: PrincipalsService,
    @Inject(Sessions) private readonly sessions: Sessions,
  ) {}

  async list(p: Principal, includeRemoved: boolean): Promise<MemberModel[]> {
    return this.tx.tenant(p.tenantId, async (m) => {
      const rows: PrincipalRow[] = await m.query(
        `SELECT id, kind, email, name, description, status, created_at FROM users
          WHERE kind = 'user' AND ($1 OR status <> 'REMOVED') ORDER BY email, id LIMIT 5000`,
        [includeRemoved],
      );
      const bindings = await bindingsOf(
        m,
        rows.map((r) => r.id),
      );
      return rows.map((r) => toMember(r, bindings));
    });
  }

  /**
   * Invites a person with a role (organization-wide or in one project). The caller must hold what the
   * role confers. The invitation's secret is returned once; the invitee exchanges it for an API token.
   */
  async invite(p: Principal, input: InviteMemberInput): Promise<InvitationModel> {
    const email = input.email.trim().toLowerCase();
    const { secret, hash } = newSecret('hit');
    return this.tx.tenant(p.tenantId, async (m) => {
      const projectId = input.projectId ?? null;
      if (projectId) await this.projects.require(m, projectId);
      const role = await resolveRole(m, input.role);
      assertMayConfer(p.grants, role.permissions, projectId, `the ${role.name} role`);
      const id = uuidv7();
      const [row]: (PrincipalRow & { invitation_expires_at: Date })[] = await m
        .query(
          `INSERT INTO users (id, tenant_id, email, kind, status, invited_by, invitation_hash, invitation_expires_at)
           VALUES ($1, $2, $3, 'user', 'INVITED', $4, $5, now() + make_interval(secs => $6))
           RETURNING id, kind, email, name, description, status, created_at, invitation_expires_at`,
          [id, p.tenantId, email, p.userId, hash, INVITATION_TTL_SECONDS],
        )
        .catch(onUniqueViolation(() => new ConflictError(`${email} is already a member`)));
      const binding = await this.principals.insertBinding(m, p.tenantId, id, role, projectId);
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'member.invite',
        target: { type: 'user', id },
        changes: { email, role: role.name, projectId },
      });
      return {
        member: toMember(row, [{ ...binding, permissions: [] }]),
        token: secret,
        expiresAt: row.invitation_expires_at,
      };
    });
  }

  /** The invitee's side (no API token yet: the invitation secret is the credential). */
  async acceptInvitation(secret: string): Promise<AcceptedInvitation> {
    const invitationHash = hashSecret(secret);
    // Which organization the invitation belongs to is not known before the lookup: one narrow read
    // as the system role, then the change itself under the tenant's row-level security.
    const [found]: { id: string; tenant_id: string }[] = await this.tx.system((m) =>
      m.query(`SELECT id, tenant_id FROM users WHERE invitation_hash = $1`, [invitationHash]),
    );
    if (!found) throw new InvitationInvalidError();
    const { secret: token, hash } = newSecret('hrt');
    await this.tx.tenant(found.tenant_id, async (m) => {
      const activated = await changedRows<unknown>(
        m,
        `UPDATE users SET status = 'ACTIVE', invitation_hash = NULL, invitation_expires_at = NULL
          WHERE id = $1 AND invitation_hash = $2 AND status = 'INVITED' AND invitation_expires_at > now()
          RETURNING id`,
        [found.id, invitationHash],
      );
      if (activated.length === 0) throw new InvitationInvalidError();
      const tokenId = uuidv7();
      await m.query(
        `INSERT INTO api_tokens (id, tenant_id, user_id, token_hash, name, created_by, expires_at)
         VALUES ($1, $2, $3, $4, 'first token', $3, now() + interval '90 days')`,
        [tokenId, found.tenant_id, found.id, hash],
      );
      await this.audit.record(
        m,
        found.tenant_id,
        { type: 'user', id: found.id, tokenId },
        { action: 'member.add', target: { type: 'user', id: found.id }, changes: { via: 'invitation' } },
      );
    });
    return { organizationId: found.tenant_id, userId: found.id, token };
  }

  /**
   * Removes a member: their bindings go, every token they hold is revoked and their open sessions end,
   * at once. Not oneself, not beyond one's own access, not the last owner.
   */
  async remove(p: Principal, id: string): Promise<MemberModel> {
    const member = await this.tx.tenant(p.tenantId, async (m) => {
      const target = await this.principals.require(m, id);
      if (target.kind !== 'user') throw new PrincipalNotFoundError(id);
      assertNotSelf(p, target.id, 'remove');
      const bindings = await bindingsOf(m, [target.id]);
      assertMayTouch(p, bindings);
      await lockOwners(m, p.tenantId);
      await m.query(`DELETE FROM role_bindings WHERE user_id = $1`, [target.id]);
      const [row] = await changedRows<PrincipalRow>(
        m,
        `UPDATE users SET status = 'REMOVED', removed_at = now(), invitation_hash = NULL WHERE id = $1
         RETURNING id, kind, email, name, description, status, created_at`,
        [target.id],
      );
      const revoked = await changedRows<unknown>(
        m,
        `UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL RETURNING id`,
        [target.id],
      );
      await assertOwnerRemains(m);
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'member.remove',
        target: { type: 'user', id: target.id },
        changes: { email: target.email, roles: bindings.map((b) => b.role), revokedCount: revoked.length },
      });
      return toMember(row, []);
    });
    this.sessions.revoke({ tenantId: p.tenantId, principalIds: [member.id] });
    return member;
  }
}
