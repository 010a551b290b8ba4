import { isPermission, isProjectPermission, isRoleName, ROLES, type Permission } from './permissions.js';

/** One permission, held in the whole organization (projectId null) or in one project. */
export interface Grant {
  permission: Permission;
  projectId: string | null;
}

/** A role binding as authentication reads it: a built-in role, or a custom role with its permissions. */
export interface BindingRow {
  role: string;
  projectId: string | null;
  /** Set for custom roles; built-in roles are resolved from the code's catalog. */
  permissions: string[] | null;
}

/** The limits of the token the caller presented. */
export interface TokenLimits {
  /** The token acts with at most these permissions; null: all of its principal's. */
  scopes: readonly string[] | null;
  /** The token acts inside this project only; null: wherever its principal may. */
  projectId: string | null;
}

function permissionsOfBinding(b: BindingRow): Permission[] {
  if (b.permissions) return b.permissions.filter(isPermission);
  return isRoleName(b.role) ? [...ROLES[b.role]] : [];
}

/**
 * What a caller may do: the union of their bindings (a project binding grants only project
 * permissions, in that project), intersected with the token's scopes and confined to the token's
 * project. Unknown roles and permissions grant nothing. Organization-wide grants absorb project ones.
 */
export function effectiveGrants(bindings: readonly BindingRow[], token: TokenLimits): Grant[] {
  const scopes = token.scopes ? new Set(token.scopes) : null;
  const org = new Set<Permission>();
  const projects = new Map<Permission, Set<string>>();
  const addProject = (p: Permission, projectId: string) => {
    if (!projects.has(p)) projects.set(p, new Set());
    projects.get(p)!.add(projectId);
  };
  for (const b of bindings) {
    for (const p of permissionsOfBinding(b)) {
      if (scopes && !scopes.has(p)) continue;
      if (b.projectId === null) {
        if (token.projectId === null) org.add(p);
        else if (isProjectPermission(p)) addProject(p, token.projectId);
      } else if (isProjectPermission(p) && (token.projectId === null || token.projectId === b.projectId)) {
        addProject(p, b.projectId);
      }
    }
  }
  const grants: Grant[] = [...org].map((permission) => ({ permission, projectId: null }));
  for (const [permission, ids] of projects) {
    if (org.has(permission)) continue;
    for (const projectId of [...ids].sort()) grants.push({ permission, projectId });
  }
  return grants;
}

/** Where a permission holds: the whole organization, some projects, or nowhere (an empty list). */
export type Scope = 'organization' | readonly string[];

export function scopeOf(grants: readonly Grant[], permission: Permission): Scope {
  const held = grants.filter((g) => g.permission === permission);
  if (held.some((g) => g.projectId === null)) return 'organization';
  return held.map((g) => g.projectId!);
}

/** Whether the grants hold a permission at a scope: organization-wide, or in the given project. */
export function holds(grants: readonly Grant[], permission: Permission, projectId: string | null): boolean {
  const scope = scopeOf(grants, permission);
  return scope === 'organization' || (projectId !== null && scope.includes(projectId));
}
