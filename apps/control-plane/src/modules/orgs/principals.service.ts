import { Inject, Injectable } from '@nestjs/common';
import { validate as isUuid, v7 as uuidv7 } from 'uuid';
import type { EntityManager } from 'typeorm';
import { assertMayConfer } from '../../platform/access/escalation.js';
import { actorOf, AuditService } from '../../platform/audit/audit.service.js';
import type { Principal } from '../../platform/auth/principal.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { ProjectsService } from '../projects/projects.service.js';
import type { ChangeRoleInput, RoleBindingModel } from './access.model.js';
import { PrincipalNotFoundError, RoleBindingNotFoundError } from './orgs.errors.js';
import {
  assertMayTouch,
  assertNotSelf,
  assertOwnerRemains,
  bindingsOf,
  lockOwners,
  resolveRole,
  toBindingModel,
} from './role-bindings.js';

export interface PrincipalRow {
  id: string;
  kind: 'user' | 'service_account';
  email: string | null;
  name: string | null;
  description: string;
  status: 'INVITED' | 'ACTIVE' | 'REMOVED';
  created_at: Date;
}

/** Role bindings of members and service accounts: change a role at a scope, remove a binding. */
@Injectable()
export class PrincipalsService {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(ProjectsService) private readonly projects: ProjectsService,
  ) {}

  /** A member or service account of the caller's organization that is not removed, or NOT_FOUND. */
  async require(m: EntityManager, id: string): Promise<PrincipalRow> {
    if (!isUuid(id)) throw new PrincipalNotFoundError(id);
    const [row]: PrincipalRow[] = await m.query(
      `SELECT id, kind, email, name, description, status, created_at FROM users
        WHERE id = $1 AND status <> 'REMOVED' FOR UPDATE`,
      [id],
    );
    if (!row) throw new PrincipalNotFoundError(id);
    return row;
  }

  /**
   * Gives a principal exactly one role at a scope, replacing the roles they hold there. The caller must
   * hold everything the new role confers and everything the replaced ones conferred; nobody changes
   * their own role, and the organization keeps an owner.
   */
  async changeRole(p: Principal, input: ChangeRoleInput): Promise<RoleBindingModel> {
    return this.tx.tenant(p.tenantId, async (m) => {
      const target = await this.require(m, input.principalId);
      const projectId = input.projectId ?? null;
      if (projectId) await this.projects.require(m, projectId);
      assertNotSelf(p, target.id, 'change the role of');
      const role = await resolveRole(m, input.role);
      assertMayConfer(p.grants, role.permissions, projectId, `the ${role.name} role`);
      const replaced = (await bindingsOf(m, [target.id])).filter((b) => b.projectId === projectId);
      assertMayTouch(p, replaced);
      await lockOwners(m, p.tenantId);
      if (replaced.length > 0)
        await m.query(`DELETE FROM role_bindings WHERE id = ANY($1)`, [replaced.map((b) => b.id)]);
      const binding = await this.insertBinding(m, p.tenantId, target.id, role, projectId);
      await assertOwnerRemains(m);
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'role_binding.create',
        target: { type: target.kind, id: target.id },
        changes: { role: role.name, projectId, replaced: replaced.map((b) => b.role) },
      });
      return binding;
    });
  }

  async removeBinding(p: Principal, id: string): Promise<RoleBindingModel> {
    if (!isUuid(id)) throw new RoleBindingNotFoundError(id);
    return this.tx.tenant(p.tenantId, async (m) => {
      const [row]: { user_id: string }[] = await m.query(`SELECT user_id FROM role_bindings WHERE id = $1`, [
        id,
      ]);
      if (!row) throw new RoleBindingNotFoundError(id);
      const binding = (await bindingsOf(m, [row.user_id])).find((b) => b.id === id)!;
      assertNotSelf(p, row.user_id, 'remove a role from');
      assertMayTouch(p, [binding]);
      await lockOwners(m, p.tenantId);
      await m.query(`DELETE FROM role_bindings WHERE id = $1`, [id]);
      await assertOwnerRemains(m);
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'role_binding.delete',
        target: { type: 'role_binding', id },
        changes: { principalId: row.user_id, role: binding.role, projectId: binding.projectId },
      });
      return toBindingModel(binding);
    });
  }

  async insertBinding(
    m: EntityManager,
    tenantId: string,
    principalId: string,
    role: { name: string; customRoleId: string | null },
    projectId: string | null,
  ): Promise<RoleBindingModel> {
    const id = uuidv7();
    const [{ created_at }]: { created_at: Date }[] = await m.query(
      `INSERT INTO role_bindings (id, tenant_id, user_id, role, custom_role_id, project_id)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`,
      [id, tenantId, principalId, role.customRoleId ? null : role.name, role.customRoleId, projectId],
    );
    return { id, principalId, role: role.name, projectId, createdAt: created_at };
  }
}
