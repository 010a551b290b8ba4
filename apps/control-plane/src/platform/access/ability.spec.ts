import { describe, expect, it } from '@jest/globals';
import { allows, allowsOn, buildAbility } from './ability.js';
import { assertMayConfer } from './escalation.js';
import { effectiveGrants, holds, scopeOf, type BindingRow } from './grants.js';
import { PERMISSIONS, ROLES } from './permissions.js';

const P1 = '018f0000-0000-7000-8000-000000000001';
const P2 = '018f0000-0000-7000-8000-000000000002';
const org = (role: string): BindingRow => ({ role, projectId: null, permissions: null });
const inProject = (role: string, projectId: string): BindingRow => ({ role, projectId, permissions: null });
const anyToken = { scopes: null, projectId: null };

describe('effective grants', () => {
  it('is the union of the roles at organization scope, and nothing for unknown roles or permissions', () => {
    const grants = effectiveGrants([org('viewer'), org('fleet_operator')], anyToken);
    expect(grants.map((g) => g.permission).sort()).toEqual(
      [
        'agents:enroll',
        'agents:read',
        'agents:revoke',
        'jobs:read',
        'models:read',
        'projects:read',
        'telemetry:read',
      ].sort(),
    );
    expect(grants.every((g) => g.projectId === null)).toBe(true);
    expect(effectiveGrants([org('superuser')], anyToken)).toEqual([]);
    expect(
      effectiveGrants(
        [{ role: 'custom', projectId: null, permissions: ['jobs:read', 'root:everything'] }],
        anyToken,
      ),
    ).toEqual([{ permission: 'jobs:read', projectId: null }]);
  });

  it('grants only project permissions, only in that project, for a project binding', () => {
    const grants = effectiveGrants([inProject('admin', P1)], anyToken);
    expect(grants.map((g) => g.permission).sort()).toEqual(
      [
        'jobs:cancel',
        'jobs:read',
        'jobs:submit',
        'models:deploy',
        'models:promote',
        'models:read',
        'models:register',
        'projects:read',
        'telemetry:read',
      ].sort(),
    );
    expect(grants.every((g) => g.projectId === P1)).toBe(true);
    expect(holds(grants, 'jobs:submit', P1)).toBe(true);
    expect(holds(grants, 'jobs:submit', P2)).toBe(false);
    expect(holds(grants, 'jobs:submit', null)).toBe(false);
    expect(holds(grants, 'agents:read', P1)).toBe(false);
  });

  it('lets an organization grant absorb project grants of the same permission', () => {
    const grants = effectiveGrants([org('viewer'), inProject('ml_engineer', P1)], anyToken);
    expect(scopeOf(grants, 'jobs:read')).toBe('organization');
    expect(scopeOf(grants, 'jobs:submit')).toEqual([P1]);
    expect(scopeOf(grants, 'audit:read')).toEqual([]);
  });

  it('narrows to the token: its scopes, and its project', () => {
    const scoped = effectiveGrants([org('owner')], { scopes: ['jobs:read', 'agents:read'], projectId: null });
    expect(scoped.map((g) => g.permission).sort()).toEqual(['agents:read', 'jobs:read']);
    const confined = effectiveGrants([org('owner'), inProject('viewer', P2)], {
      scopes: null,
      projectId: P1,
    });
    expect(confined.every((g) => g.projectId === P1)).toBe(true);
    expect(confined.map((g) => g.permission)).not.toContain('agents:read');
    expect(holds(confined, 'jobs:submit', P1)).toBe(true);
    expect(holds(confined, 'jobs:read', P2)).toBe(false);
  });
});

describe('abilities', () => {
  it('allows what the grants say, and denies the rest, for every built-in role', () => {
    for (const [role, granted] of Object.entries(ROLES)) {
      const ability = buildAbility(effectiveGrants([org(role)], anyToken));
      for (const p of PERMISSIONS)
        expect({ role, p, ok: allows(ability, p) }).toEqual({ role, p, ok: granted.includes(p) });
    }
  });

  it('checks objects against the project of a project grant', () => {
    const ability = buildAbility(effectiveGrants([inProject('ml_engineer', P1)], anyToken));
    expect(allows(ability, 'jobs:submit')).toBe(true);
    expect(allowsOn(ability, 'jobs:submit', P1)).toBe(true);
    expect(allowsOn(ability, 'jobs:submit', P2)).toBe(false);
    expect(allowsOn(ability, 'jobs:submit', null)).toBe(false);
    const orgWide = buildAbility(effectiveGrants([org('viewer')], anyToken));
    expect(allowsOn(orgWide, 'jobs:read', P2)).toBe(true);
    expect(allowsOn(orgWide, 'jobs:read', null)).toBe(true);
  });

  it('keeps org:admin for owners only', () => {
    const holders = Object.entries(ROLES)
      .filter(([, ps]) => ps.includes('org:admin'))
      .map(([r]) => r);
    expect(holders).toEqual(['owner']);
  });
});

describe('escalation', () => {
  const admin = effectiveGrants([org('admin')], anyToken);
  it('lets a caller confer what they hold', () => {
    expect(() => assertMayConfer(admin, ROLES.ml_engineer, null, 'this binding')).not.toThrow();
    expect(() => assertMayConfer(admin, ROLES.admin, null, 'this binding')).not.toThrow();
  });
  it('refuses to confer a permission the caller lacks, and names it', () => {
    expect(() => assertMayConfer(admin, ROLES.owner, null, 'this binding')).toThrow(
      'this binding would grant org:admin, which you do not hold',
    );
    const projectAdmin = effectiveGrants([inProject('admin', P1)], anyToken);
    expect(() => assertMayConfer(projectAdmin, ROLES.ml_engineer, P1, 'this binding')).not.toThrow();
    expect(() => assertMayConfer(projectAdmin, ROLES.ml_engineer, P2, 'this binding')).toThrow(
      /would grant .*jobs:submit.*in that project/,
    );
  });
  it('counts only project permissions for a project binding', () => {
    const p1Engineer = effectiveGrants([inProject('ml_engineer', P1)], anyToken);
    // agents:read is part of the role but confers nothing in a project binding.
    expect(() => assertMayConfer(p1Engineer, ROLES.viewer, P1, 'this binding')).not.toThrow();
  });
});
