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
  /**
   * Aborts when the agent begins to stop: a heartbeat saying so goes at once (and every one after
   * it says so), so the control plane sends this agent nothing more while it drains.
   */
  stopping?: AbortSignal;
  guard: EgressGuard;
  counters: AgentCounters;
  logger: Logger;
}

/**
 * Publishes a heartbeat at once and then every interval until the signal aborts, and one more at
 * once when the agent begins to stop. Heartbeats are core NATS and periodic: a failed one is
 * counted and surfaced, and the next tick is its retry.
 */
export async function runHeartbeats(options: HeartbeatOptions, signal: AbortSignal): Promise<void> {
  const { guard, source, counters, logger, stopping } = options;
  // Ends a wait on shutdown, or when the stop begins (once: afterwards only shutdown ends one).
  const stopBegan = new AbortController();
  const wake = () => stopBegan.abort();
  signal.addEventListener('abort', wake, { once: true });
  stopping?.addEventListener('abort', wake, { once: true });
  for (;;) {
    try {
      guard.heartbeat({
        type: 'agent.heartbeat',
        v: 1,
        agentId: options.agentId,
        sentAt: new Date().toISOString(),
        running: source.running().slice(0, 1024),
        freeSlots: Math.min(source.freeSlots(), 1024),
        ...(stopping?.aborted ? { stopping: true as const } : {}),
        system: options.system,
      });
    } catch (err) {
      counters.heartbeatFailures++;
      logger.warn({ err: errorMessage(err), failures: counters.heartbeatFailures }, 'heartbeat not sent');
    }
    const waitOn = stopBegan.signal.aborted ? signal : stopBegan.signal;
    if (!(await sleep(options.intervalSeconds * 1000, waitOn)) && signal.aborted) {
      stopping?.removeEventListener('abort', wake);
      return;
    }
  }
}
