import { Inject, Injectable } from '@nestjs/common';
import { validate as isUuid, v7 as uuidv7 } from 'uuid';
import { assertMayConfer } from '../../platform/access/escalation.js';
import { isPermission, ROLE_NAMES, ROLES, type Permission } from '../../platform/access/permissions.js';
import { actorOf, AuditService } from '../../platform/audit/audit.service.js';
import type { Principal } from '../../platform/auth/principal.js';
import { changedRows } from '../../platform/database/returning.js';
import { onUniqueViolation } from '../../platform/database/unique-violation.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import type { CreateRoleInput, RoleModel, UpdateRoleInput } from './access.model.js';
import { ConflictError, RoleNotFoundError, UnknownPermissionError } from './orgs.errors.js';

interface RoleRow {
  id: string;
  name: string;
  description: string;
  permissions: Permission[];
}
const COLUMNS = 'id, name, description, permissions';

const BUILT_IN_DESCRIPTIONS: Record<(typeof ROLE_NAMES)[number], string> = {
  owner: 'Everything, including the organization itself.',
  admin: 'Everything except administering the organization itself.',
  ml_engineer: 'Runs and manages jobs and models.',
  viewer: 'Reads jobs, agents and projects.',
  auditor: 'Read-only, including the audit trail and the member list.',
  fleet_operator: 'Enrolls, watches and revokes agents.',
};

const toModel = (r: RoleRow): RoleModel => ({ ...r, builtIn: false, permissions: [...r.permissions].sort() });

/** Validates a permission list against the catalog: unknown names are refused, not ignored. */
function catalogPermissions(names: readonly string[]): Permission[] {
  const unknown = names.filter((n) => !isPermission(n));
  if (unknown.length > 0) throw new UnknownPermissionError(unknown);
  return [...new Set(names as Permission[])].sort();
}

@Injectable()
export class RolesService {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
  ) {}

  async list(p: Principal): Promise<RoleModel[]> {
    const builtIn: RoleModel[] = ROLE_NAMES.map((name) => ({
      id: name,
      name,
      builtIn: true,
      description: BUILT_IN_DESCRIPTIONS[name],
      permissions: [...ROLES[name]],
    }));
    const custom: RoleRow[] = await this.tx.tenant(p.tenantId, (m) =>
      m.query(`SELECT ${COLUMNS} FROM custom_roles ORDER BY name`),
    );
    return [...builtIn, ...custom.map(toModel)];
  }

  /** A custom role; defining it may not reach beyond the caller's own permissions. */
  async create(p: Principal, input: CreateRoleInput): Promise<RoleModel> {
    if ((ROLE_NAMES as readonly string[]).includes(input.name))
      throw new ConflictError(`${input.name} is a built-in role; give the custom role another name`);
    const permissions = catalogPermissions(input.permissions);
    assertMayConfer(p.grants, permissions, null, `the ${input.name} role`);
    return this.tx.tenant(p.tenantId, async (m) => {
      const id = uuidv7();
      const [row]: RoleRow[] = await m
        .query(
          `INSERT INTO custom_roles (id, tenant_id, name, description, permissions) VALUES ($1, $2, $3, $4, $5)
           RETURNING ${COLUMNS}`,
          [id, p.tenantId, input.name, input.description ?? '', permissions],
        )
        .catch(onUniqueViolation(() => new ConflictError(`a role named ${input.name} exists`)));
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'role.create',
        target: { type: 'role', id },
        changes: { name: input.name, permissions },
      });
      return toModel(row);
    });
  }

  /**
   * Changing a role changes the access of everyone bound to it: the caller must hold both what it
   * granted and what it will grant (so nobody widens, or strips, a role beyond their own access).
   */
  async update(p: Principal, input: UpdateRoleInput): Promise<RoleModel> {
    if (!isUuid(input.id)) throw new RoleNotFoundError(input.id);
    const permissions = input.permissions ? catalogPermissions(input.permissions) : null;
    return this.tx.tenant(p.tenantId, async (m) => {
      const [found]: RoleRow[] = await m.query(
        `SELECT ${COLUMNS} FROM custom_roles WHERE id = $1 FOR UPDATE`,
        [input.id],
      );
      if (!found) throw new RoleNotFoundError(input.id);
      assertMayConfer(p.grants, found.permissions, null, `changing the ${found.name} role`);
      if (permissions) assertMayConfer(p.grants, permissions, null, `the ${found.name} role`);
      const [row] = await changedRows<RoleRow>(
        m,
        `UPDATE custom_roles SET permissions = $2, description = $3, updated_at = now() WHERE id = $1
         RETURNING ${COLUMNS}`,
        [input.id, permissions ?? found.permissions, input.description ?? found.description],
      );
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'role.update',
        target: { type: 'role', id: input.id },
        changes: { before: found.permissions, after: row.permissions, description: row.description },
      });
      return toModel(row);
    });
  }

  /** Deletes an unused custom role; one still bound is refused with how many bindings hold it. */
  async delete(p: Principal, id: string): Promise<RoleModel> {
    if (!isUuid(id)) throw new RoleNotFoundError(id);
    return this.tx.tenant(p.tenantId, async (m) => {
      const [found]: RoleRow[] = await m.query(
        `SELECT ${COLUMNS} FROM custom_roles WHERE id = $1 FOR UPDATE`,
        [id],
      );
      if (!found) throw new RoleNotFoundError(id);
      assertMayConfer(p.grants, found.permissions, null, `deleting the ${found.name} role`);
      const [{ n }]: { n: number }[] = await m.query(
        `SELECT count(*)::int AS n FROM role_bindings WHERE custom_role_id = $1`,
        [id],
      );
      if (n > 0)
        throw new ConflictError(
          `role ${found.name} is still bound ${n} time(s); remove those bindings first`,
        );
      await m.query(`DELETE FROM custom_roles WHERE id = $1`, [id]);
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'role.delete',
        target: { type: 'role', id },
        changes: { name: found.name, permissions: found.permissions },
      });
      return toModel(found);
    });
  }
}
