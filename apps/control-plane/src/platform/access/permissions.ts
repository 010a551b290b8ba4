/**
 * The permission catalog and the built-in roles. A role is a set of catalog permissions; a principal's
 * effective access is the union of their role bindings (at organization or project scope), narrowed
 * by the token they call with; anything not granted is denied.
 */
export const PERMISSIONS = [
  'jobs:submit',
  'jobs:read',
  'jobs:cancel',
  'agents:read',
  'agents:enroll',
  'agents:revoke',
  'models:read',
  'models:register',
  'models:promote',
  'models:deploy',
  'projects:read',
  'projects:manage',
  'members:read',
  'members:manage',
  'roles:manage',
  'audit:read',
  'telemetry:read',
  'telemetry:manage',
  'org:admin',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

/**
 * Permissions on objects that belong to a project (jobs, models): a binding at project scope grants
 * them inside that project only. Every other permission is about the organization as a whole (its
 * fleet, members, roles, audit trail) and only an organization-scope binding grants it.
 */
export const PROJECT_PERMISSIONS: readonly Permission[] = [
  'jobs:submit',
  'jobs:read',
  'jobs:cancel',
  'models:read',
  'models:register',
  'models:promote',
  'models:deploy',
  'projects:read',
  // Utilisation of a project's jobs is project data; fleet-wide views also need agents:read.
  'telemetry:read',
];

export const ROLE_NAMES = ['owner', 'admin', 'ml_engineer', 'viewer', 'auditor', 'fleet_operator'] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

const all = PERMISSIONS.filter((p) => p !== 'org:admin');

export const ROLES: Record<RoleName, readonly Permission[]> = {
  owner: PERMISSIONS,
  admin: all,
  ml_engineer: [
    'jobs:submit',
    'jobs:read',
    'jobs:cancel',
    'agents:read',
    'models:read',
    'models:register',
    'models:promote',
    'models:deploy',
    'projects:read',
    'telemetry:read',
  ],
  viewer: ['jobs:read', 'agents:read', 'models:read', 'projects:read', 'telemetry:read'],
  auditor: [
    'jobs:read',
    'agents:read',
    'models:read',
    'projects:read',
    'members:read',
    'audit:read',
    'telemetry:read',
  ],
  // Utilisation of the fleet they run (telemetry:manage, prices and the idle policy, stays with admins).
  fleet_operator: ['agents:read', 'agents:enroll', 'agents:revoke', 'telemetry:read'],
};

export function isRoleName(value: string): value is RoleName {
  return (ROLE_NAMES as readonly string[]).includes(value);
}

export function isPermission(value: string): value is Permission {
  return (PERMISSIONS as readonly string[]).includes(value);
}

export function isProjectPermission(p: Permission): boolean {
  return PROJECT_PERMISSIONS.includes(p);
}
