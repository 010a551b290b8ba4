/**
 * NATS subjects and JetStream names. Built only through these functions, never by concatenation at
 * call sites, so that the permissions nats-server enforces (see agentPermissions) and the subjects
 * the code uses cannot drift apart. Tenant and agent ids are UUIDs: valid single subject tokens.
 */
const ROOT = 'hearth';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function token(kind: string, value: string): string {
  if (!UUID.test(value)) throw new Error(`invalid ${kind} for a subject: ${JSON.stringify(value)}`);
  return value;
}

export interface AgentAddress {
  tenantId: string;
  agentId: string;
}

function agentRoot({ tenantId, agentId }: AgentAddress): string {
  return `${ROOT}.${token('tenant id', tenantId)}.agent.${token('agent id', agentId)}`;
}

/** Stream holding what the control plane sends down to agents (work queue). */
export const DOWN_STREAM = 'HEARTH_DOWN';
/** Stream holding the events agents send up (work queue, one shared control-plane consumer). */
export const UP_STREAM = 'HEARTH_UP';
/** The durable consumer the control-plane replicas share on UP_STREAM. */
export const UP_CONSUMER = 'control-plane';
/** Stream holding agents' telemetry batches (work queue with limits; see the telemetry module). */
export const TELEMETRY_STREAM = 'HEARTH_TELEMETRY';
/** The durable consumer the control-plane replicas share on TELEMETRY_STREAM. */
export const TELEMETRY_CONSUMER = 'control-plane-telemetry';
/** Queue group the control-plane replicas share for core-NATS subjects (heartbeats, RPC). */
export const CONTROL_PLANE_QUEUE = 'hearth-control-plane';

export const subjects = {
  /** Job dispatch messages for one agent (DOWN_STREAM). */
  jobs: (a: AgentAddress) => `${agentRoot(a)}.down.job`,
  /** Control messages (cancel) for one agent (DOWN_STREAM). */
  control: (a: AgentAddress) => `${agentRoot(a)}.down.ctl`,
  /** Job events from one agent (UP_STREAM). */
  events: (a: AgentAddress) => `${agentRoot(a)}.up.evt`,
  /** Heartbeats from one agent (core NATS, not persisted). */
  heartbeat: (a: AgentAddress) => `${agentRoot(a)}.up.hb`,
  /** Request/reply: the agent claims an attempt before it starts anything (core NATS). */
  claim: (a: AgentAddress) => `${agentRoot(a)}.up.rpc.claim`,
  /** Telemetry batches from one agent (TELEMETRY_STREAM). */
  telemetry: (a: AgentAddress) => `${agentRoot(a)}.up.tel`,
  /** Everything below an agent; used by tests and the permission builder. */
  agentAll: (a: AgentAddress) => `${agentRoot(a)}.>`,

  /** Wildcards the control plane binds to. */
  wildcard: {
    down: `${ROOT}.*.agent.*.down.>`,
    events: `${ROOT}.*.agent.*.up.evt`,
    heartbeat: `${ROOT}.*.agent.*.up.hb`,
    claim: `${ROOT}.*.agent.*.up.rpc.claim`,
    telemetry: `${ROOT}.*.agent.*.up.tel`,
  },

  /** Reads tenant and agent back from a subject the server delivered; null when it is not ours. */
  parse(subject: string): AgentAddress | null {
    const parts = subject.split('.');
    if (parts.length < 5 || parts[0] !== ROOT || parts[2] !== 'agent') return null;
    const [, tenantId, , agentId] = parts;
    if (!UUID.test(tenantId) || !UUID.test(agentId)) return null;
    return { tenantId, agentId };
  },
};

/** Durable consumer names for one agent on DOWN_STREAM. */
export const consumers = {
  jobs: (agentId: string) => `agent-${token('agent id', agentId)}-job`,
  control: (agentId: string) => `agent-${token('agent id', agentId)}-ctl`,
};

/** Inbox prefix an agent must use, so that it can only receive replies addressed to itself. */
export const agentInboxPrefix = (agentId: string) => `_INBOX_${token('agent id', agentId)}`;

export interface SubjectPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
}

/**
 * Exactly what an agent's NATS credentials allow. nats-server enforces this, so an agent cannot
 * read another agent's work or speak as another agent, whatever its code does.
 */
export function agentPermissions(a: AgentAddress): SubjectPermissions {
  const jobConsumer = consumers.jobs(a.agentId);
  const ctlConsumer = consumers.control(a.agentId);
  return {
    publish: {
      allow: [
        subjects.events(a),
        subjects.heartbeat(a),
        subjects.claim(a),
        subjects.telemetry(a),
        ...[jobConsumer, ctlConsumer].flatMap((c) => [
          `$JS.API.CONSUMER.INFO.${DOWN_STREAM}.${c}`,
          `$JS.API.CONSUMER.MSG.NEXT.${DOWN_STREAM}.${c}`,
          `$JS.ACK.${DOWN_STREAM}.${c}.>`,
        ]),
      ],
    },
    subscribe: { allow: [`${agentInboxPrefix(a.agentId)}.>`] },
  };
}
