/**
 * The permission catalog and the built-in roles. A role is a set of catalog permissions; a user's
 * effective access is the union of their roles' permissions; anything not granted is denied.
 */
export const PERMISSIONS = [
  'jobs:submit',
  'jobs:read',
  'jobs:cancel',
  'agents:read',
  'agents:enroll',
  'agents:revoke',
  'models:promote',
  'members:manage',
  'roles:manage',
  'audit:read',
  'org:admin',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const ROLE_NAMES = ['owner', 'admin', 'ml_engineer', 'viewer', 'auditor', 'fleet_operator'] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

const all = PERMISSIONS.filter((p) => p !== 'org:admin');

export const ROLES: Record<RoleName, readonly Permission[]> = {
  owner: PERMISSIONS,
  admin: all,
  ml_engineer: ['jobs:submit', 'jobs:read', 'jobs:cancel', 'agents:read', 'models:promote'],
  viewer: ['jobs:read', 'agents:read'],
  auditor: ['jobs:read', 'agents:read', 'audit:read'],
  fleet_operator: ['agents:read', 'agents:enroll', 'agents:revoke'],
};

export function isRoleName(value: string): value is RoleName {
  return (ROLE_NAMES as readonly string[]).includes(value);
}

/** The union of the roles' permissions; unknown role names grant nothing. */
export function permissionsOf(roles: readonly string[]): ReadonlySet<Permission> {
  return new Set(roles.filter(isRoleName).flatMap((r) => ROLES[r]));
}
