import { randomUUID } from 'node:crypto';
import type { AgentHeartbeat, JobDispatch, JobFinished } from '@hearth/contracts';

/** The dispatch fields every kind has, which a test may override. */
export type DispatchBase = Pick<
  JobDispatch,
  'jobId' | 'attemptId' | 'fencingToken' | 'env' | 'timeoutSeconds' | 'cancelGraceSeconds'
>;
/** One kind's part of a dispatch ({ kind: 'train', train: … }…), with base overrides if any. */
export type DispatchSpec = (JobDispatch extends infer J
  ? J extends JobDispatch
    ? Omit<J, keyof DispatchBase | 'type' | 'v'>
    : never
  : never) &
  Partial<DispatchBase>;

/**
 * A dispatch message of the spec's kind, as the control plane sends it; the base fields default to
 * a fresh job and attempt, fencing token 1, no env, a 60 s timeout and a 5 s cancel grace.
 */
export function jobDispatch<S extends DispatchSpec>(spec: S): Extract<JobDispatch, { kind: S['kind'] }> {
  const job = {
    type: 'job.dispatch',
    v: 1,
    jobId: randomUUID(),
    attemptId: randomUUID(),
    fencingToken: 1,
    env: {},
    timeoutSeconds: 60,
    cancelGraceSeconds: 5,
    ...spec,
  } as JobDispatch;
  return job as Extract<JobDispatch, { kind: S['kind'] }>;
}

type AttemptRef = Pick<JobFinished, 'jobId' | 'attemptId' | 'fencingToken'>;

/** A successful attempt's end (exit code 0, no result), as an agent reports it; `extra` overrides. */
export function jobFinished(ref: AttemptRef, extra: Partial<JobFinished> = {}): JobFinished {
  return {
    type: 'job.finished',
    v: 1,
    ...ref,
    outcome: 'SUCCEEDED',
    exitCode: 0,
    signal: null,
    reason: null,
    finishedAt: new Date().toISOString(),
    ...extra,
  };
}

/** A heartbeat of an idle 4-core Linux agent with no GPUs and 4 free slots; `extra` overrides. */
export function agentHeartbeat(agentId: string, extra: Partial<AgentHeartbeat> = {}): AgentHeartbeat {
  return {
    type: 'agent.heartbeat',
    v: 1,
    agentId,
    sentAt: new Date().toISOString(),
    running: [],
    freeSlots: 4,
    system: {
      hostname: 'test-agent',
      os: 'linux',
      arch: 'x64',
      cpus: 4,
      memoryBytes: 2 ** 33,
      gpus: [],
      agentVersion: '0.1.0',
    },
    ...extra,
  };
}
