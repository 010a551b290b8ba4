import type { AgentEntity } from './agent.entity.js';

export type AgentStateName = 'ONLINE' | 'OFFLINE' | 'REVOKED';

/**
 * An agent's state is derived, not stored: revoked, or heard from within the lease, or not. No
 * process has to flip it, so no replica owns a timer for it.
 */
export function agentState(
  a: Pick<AgentEntity, 'revokedAt' | 'lastHeartbeatAt'>,
  leaseSeconds: number,
  now = new Date(),
): AgentStateName {
  if (a.revokedAt) return 'REVOKED';
  if (a.lastHeartbeatAt && now.getTime() - a.lastHeartbeatAt.getTime() <= leaseSeconds * 1000)
    return 'ONLINE';
  return 'OFFLINE';
}
