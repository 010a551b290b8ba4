import { describe, expect, it } from '@jest/globals';
import { agentState } from './agent-state.js';

describe('agentState', () => {
  const now = new Date('2026-11-21T10:00:10Z');
  it('is ONLINE within the lease and OFFLINE after it', () => {
    expect(agentState({ revokedAt: null, lastHeartbeatAt: new Date('2026-11-21T10:00:03Z') }, 8, now)).toBe(
      'ONLINE',
    );
    expect(agentState({ revokedAt: null, lastHeartbeatAt: new Date('2026-11-21T10:00:01Z') }, 8, now)).toBe(
      'OFFLINE',
    );
    expect(agentState({ revokedAt: null, lastHeartbeatAt: null }, 8, now)).toBe('OFFLINE');
  });
  it('is REVOKED whatever its heartbeat says', () => {
    expect(agentState({ revokedAt: now, lastHeartbeatAt: now }, 8, now)).toBe('REVOKED');
  });
});
