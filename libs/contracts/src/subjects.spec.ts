import { describe, expect, it } from '@jest/globals';
import { agentPermissions, subjects } from './subjects.js';

const a = {
  tenantId: '0190f3a4-5b6c-7d8e-9f00-000000000001',
  agentId: '0190f3a4-5b6c-7d8e-9f00-0000000000aa',
};

describe('subjects', () => {
  it('puts tenant and agent in every agent subject and parses them back', () => {
    const s = subjects.events(a);
    expect(s).toBe(`hearth.${a.tenantId}.agent.${a.agentId}.up.evt`);
    expect(subjects.parse(s)).toEqual(a);
  });

  it('refuses ids that would break out of their subject token', () => {
    expect(() => subjects.jobs({ ...a, agentId: '*' })).toThrow(/invalid agent id/);
    expect(() => subjects.jobs({ ...a, tenantId: 'x.>' })).toThrow(/invalid tenant id/);
    expect(subjects.parse('hearth.x.agent.y.up.evt')).toBeNull();
  });

  it('lets an agent publish only under its own subjects and read only its own inbox', () => {
    const p = agentPermissions(a);
    for (const subject of [...p.publish.allow, ...p.subscribe.allow]) {
      expect(subject.includes(a.agentId)).toBe(true);
      expect(subject).not.toMatch(/(^|\.)\*(\.|$)/);
    }
    expect(p.publish.allow).not.toContain(subjects.jobs(a));
    expect(p.publish.allow).toContain(subjects.telemetry(a));
    expect(subjects.parse(subjects.telemetry(a))).toEqual(a);
  });
});
