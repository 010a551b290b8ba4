import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry for the process, served at GET /metrics. */
export const registry = new Registry();
collectDefaultMetrics({ register: registry });

export const agentMessagesShed = new Counter({
  name: 'hearth_agent_messages_shed_total',
  help:
    "Agent messages not handled on arrival. Heartbeats and claims dropped before any work: over the agent's " +
    "rate (rate limited) or with the control plane's queue for agent work full (overloaded); agents send " +
    'heartbeats again and retry claims. Job events set aside (kind event, reason set aside): the agent ' +
    'had its share of the event slots; they stay in the stream and are handled in order later.',
  labelNames: ['kind', 'reason'] as const,
  registers: [registry],
});

export const agentMessagesRejected = new Counter({
  name: 'hearth_agent_messages_rejected_total',
  help: 'Messages from agents that were rejected (malformed, oversized, unknown, or from a revoked agent).',
  labelNames: ['kind', 'reason'] as const,
  registers: [registry],
});

export const staleResultsRejected = new Counter({
  name: 'hearth_stale_results_rejected_total',
  help: 'Results and logs from attempts that are no longer current (fenced off).',
  labelNames: ['type'] as const,
  registers: [registry],
});

export const jobTransitions = new Counter({
  name: 'hearth_job_transitions_total',
  help: 'Job state transitions applied.',
  labelNames: ['to'] as const,
  registers: [registry],
});

export const dispatchToRunning = new Histogram({
  name: 'hearth_job_dispatch_to_running_seconds',
  help: 'From submit to the agent claiming the attempt.',
  buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
  registers: [registry],
});

export const authFailures = new Counter({
  name: 'hearth_auth_failures_total',
  help: 'Failed authentications: missing, unknown, revoked or expired tokens, removed principals.',
  labelNames: ['reason'] as const,
  registers: [registry],
});
