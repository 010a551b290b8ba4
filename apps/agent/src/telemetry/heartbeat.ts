import type { SystemInfo } from '@hearth/contracts';
import { sleep } from '../connection/backoff.js';
import type { EgressGuard } from '../egress/guard.js';
import { errorMessage, type Logger } from '../logger.js';
import type { AgentCounters } from './counters.js';

export interface HeartbeatSource {
  running(): { attemptId: string; fencingToken: number }[];
  freeSlots(): number;
}

export interface HeartbeatOptions {
  agentId: string;
  intervalSeconds: number;
  system: SystemInfo;
  source: HeartbeatSource;
  guard: EgressGuard;
  counters: AgentCounters;
  logger: Logger;
}

/**
 * Publishes a heartbeat at once and then every interval until the signal aborts. Heartbeats are
 * core NATS and periodic: a failed one is counted and surfaced, and the next tick is its retry.
 */
export async function runHeartbeats(options: HeartbeatOptions, signal: AbortSignal): Promise<void> {
  const { guard, source, counters, logger } = options;
  do {
    try {
      guard.heartbeat({
        type: 'agent.heartbeat',
        v: 1,
        agentId: options.agentId,
        sentAt: new Date().toISOString(),
        running: source.running().slice(0, 1024),
        freeSlots: Math.min(source.freeSlots(), 1024),
        system: options.system,
      });
    } catch (err) {
      counters.heartbeatFailures++;
      logger.warn({ err: errorMessage(err), failures: counters.heartbeatFailures }, 'heartbeat not sent');
    }
  } while (await sleep(options.intervalSeconds * 1000, signal));
}
