import { describe, expect, it } from '@jest/globals';
import { allows, buildAbility } from './ability.js';
import { PERMISSIONS, permissionsOf, ROLES } from './permissions.js';

describe('roles and abilities', () => {
  it('grants exactly the union of the roles, and nothing for unknown roles', () => {
    expect([...permissionsOf(['viewer', 'fleet_operator'])].sort()).toEqual(
      ['agents:enroll', 'agents:read', 'agents:revoke', 'jobs:read'].sort(),
    );
    expect([...permissionsOf(['superuser'])]).toEqual([]);
  });

  it('lets the ability allow what the permissions say, and deny the rest', () => {
    for (const [role, granted] of Object.entries(ROLES)) {
      const ability = buildAbility(granted);
      for (const p of PERMISSIONS)
        expect({ role, p, ok: allows(ability, p) }).toEqual({ role, p, ok: granted.includes(p) });
    }
  });

  it('keeps org:admin for owners only', () => {
    const holders = Object.entries(ROLES)
      .filter(([, ps]) => ps.includes('org:admin'))
      .map(([r]) => r);
    expect(holders).toEqual(['owner']);
  });
});
