/**
 * Role bindings as the member, service-account and token services use them, inside the caller's
 * transaction: resolving a role name, reading bindings, and the rules no permission can override
 * (nobody changes their own access; an organization always keeps an owner).
 */
import type { EntityManager } from 'typeorm';
import { assertMayConfer } from '../../platform/access/escalation.js';
import { effectiveGrants, holds, type BindingRow, type TokenLimits } from '../../platform/access/grants.js';
import { isRoleName, ROLE_NAMES, ROLES, type Permission } from '../../platform/access/permissions.js';
import type { Principal } from '../../platform/auth/principal.js';
import { EscalationError } from '../../platform/access/escalation.js';
import { AccessRuleError, UnknownRoleError } from './orgs.errors.js';
import type { RoleBindingModel } from './access.model.js';

export interface ResolvedRole {
  name: string;
  customRoleId: string | null;
  permissions: Permission[];
}

export interface BindingRecord extends RoleBindingModel {
  permissions: Permission[];
}

interface BindingDbRow {
  id: string;
  user_id: string;
  role: string | null;
  custom_name: string | null;
  custom_role_id: string | null;
  custom_permissions: Permission[] | null;
  project_id: string | null;
  created_at: Date;
}

export async function resolveRole(m: EntityManager, name: string): Promise<ResolvedRole> {
  if (isRoleName(name)) return { name, customRoleId: null, permissions: [...ROLES[name]] };
  const [row]: { id: string; permissions: Permission[] }[] = await m.query(
    `SELECT id, permissions FROM custom_roles WHERE name = $1`,
    [name],
  );
  if (!row) {
    const custom: { name: string }[] = await m.query(`SELECT name FROM custom_roles ORDER BY name LIMIT 200`);
    throw new UnknownRoleError(name, [...ROLE_NAMES, ...custom.map((c) => c.name)]);
  }
  return { name, customRoleId: row.id, permissions: row.permissions };
}

/** The bindings of the given principals, in one query. */
export async function bindingsOf(
  m: EntityManager,
  principalIds: readonly string[],
): Promise<BindingRecord[]> {
  if (principalIds.length === 0) return [];
  const rows: BindingDbRow[] = await m.query(
    `SELECT b.id, b.user_id, b.role, r.name AS custom_name, b.custom_role_id, r.permissions AS custom_permissions,
            b.project_id, b.created_at
       FROM role_bindings b LEFT JOIN custom_roles r ON r.id = b.custom_role_id
      WHERE b.user_id = ANY($1) ORDER BY b.id`,
    [principalIds],
  );
  return rows.map((r) => ({
    id: r.id,
    principalId: r.user_id,
    role: r.role ?? r.custom_name!,
    projectId: r.project_id,
    createdAt: r.created_at,
    permissions: r.custom_permissions ?? (isRoleName(r.role!) ? [...ROLES[r.role!]] : []),
  }));
}

/** A principal's bindings as the API shows them (without the resolved permissions). */
export function bindingModelsOf(bindings: readonly BindingRecord[], principalId: string): RoleBindingModel[] {
  return bindings.filter((b) => b.principalId === principalId).map(toBindingModel);
}

export function toBindingModel({ permissions: _, ...model }: BindingRecord): RoleBindingModel {
  return model;
}

export function toBindingRows(bindings: readonly BindingRecord[]): BindingRow[] {
  return bindings.map((b) => ({ role: b.role, projectId: b.projectId, permissions: b.permissions }));
}

export function assertNotSelf(caller: Principal, principalId: string, what: string): void {
  if (caller.userId === principalId) throw new AccessRuleError(`you cannot ${what} yourself`);
}

/** Changing or removing a binding takes away what it confers: the caller must hold all of that too. */
export function assertMayTouch(caller: Principal, bindings: readonly BindingRecord[]): void {
  for (const b of bindings)
    assertMayConfer(caller.grants, b.permissions, b.projectId, `changing the ${b.role} role`);
}

/** A token can never act beyond its creator's current access: each grant it would carry must be held. */
export function assertTokenWithinCaller(
  caller: Principal,
  principalBindings: readonly BindingRecord[],
  limits: TokenLimits,
): void {
  const missing = effectiveGrants(toBindingRows(principalBindings), limits).filter(
    (g) => !holds(caller.grants, g.permission, g.projectId),
  );
  if (missing.length > 0)
    throw new EscalationError(
      `this token would carry ${[...new Set(missing.map((g) => g.permission))].join(', ')}, which you do not hold`,
    );
}

/**
 * Called after any change that can take an owner binding away, in the same transaction: fails (and so
 * rolls the change back) when no active member keeps an organization-wide owner binding. The advisory
 * lock serializes such changes per organization, so two owners cannot remove each other at once.
 */
export async function lockOwners(m: EntityManager, tenantId: string): Promise<void> {
  await m.query(`SELECT pg_advisory_xact_lock(hashtextextended('hearth.owners.' || $1, 0))`, [tenantId]);
}

export async function assertOwnerRemains(m: EntityManager): Promise<void> {
  const [{ owners }]: { owners: number }[] = await m.query(
    `SELECT count(*)::int AS owners FROM role_bindings b JOIN users u ON u.id = b.user_id
      WHERE b.role = 'owner' AND b.project_id IS NULL AND u.status = 'ACTIVE' AND u.kind = 'user'`,
  );
  if (owners === 0) throw new AccessRuleError('the organization must keep at least one owner');
}
