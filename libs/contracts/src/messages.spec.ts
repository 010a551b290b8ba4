import { describe, expect, it } from '@jest/globals';
import {
  AgentHeartbeat,
  decode,
  encode,
  JobFinished,
  JobReleased,
  MAX_MESSAGE_BYTES,
  UpEvent,
} from './messages.js';

const ids = {
  jobId: '0190f3a4-5b6c-7d8e-9f00-112233445566',
  attemptId: '0190f3a4-5b6c-7d8e-9f00-112233445577',
  fencingToken: 3,
};
const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

describe('wire messages', () => {
  const finished = {
    type: 'job.finished',
    v: 1,
    ...ids,
    outcome: 'FAILED',
    exitCode: 3,
    signal: null,
    reason: null,
    finishedAt: '2026-11-21T10:00:00.000Z',
  } as const;

  it('round-trips a valid event', () => {
    const result = decode(UpEvent, encode(JobFinished, finished));
    expect(result).toEqual({ ok: true, value: finished });
  });

  it('rejects unknown fields, so nothing free-form can ride along', () => {
    const result = decode(UpEvent, bytes({ ...finished, rows: ['secret,1,2'] }));
    expect(result.ok).toBe(false);
  });

  it('rejects an unknown type and an unknown version', () => {
    expect(decode(UpEvent, bytes({ ...finished, type: 'job.exfiltrate' })).ok).toBe(false);
    expect(decode(UpEvent, bytes({ ...finished, v: 2 })).ok).toBe(false);
  });

  it('rejects oversized and non-JSON input without throwing', () => {
    const big = new Uint8Array(MAX_MESSAGE_BYTES + 1);
    expect(decode(UpEvent, big)).toEqual({ ok: false, error: `oversized (${MAX_MESSAGE_BYTES + 1} bytes)` });
    expect(decode(UpEvent, new TextEncoder().encode('{nope'))).toEqual({ ok: false, error: 'not JSON' });
  });

  it('bounds the log tail', () => {
    const line = { stream: 'stdout', text: 'x'.repeat(1025) };
    const log = { type: 'job.log', v: 1, ...ids, seq: 0, lines: [line], dropped: 0 };
    const result = decode(UpEvent, bytes(log));
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error).toContain('lines.0.text');
  });

  it('refuses integers the control plane cannot store (Postgres integer, GraphQL Int), which would never apply', () => {
    const over = 2 ** 31;
    const log = { type: 'job.log', v: 1, ...ids, seq: 0, lines: [], dropped: 0 };
    const progress = {
      type: 'job.progress',
      v: 1,
      ...ids,
      seq: 0,
      progress: { kind: 'train.backend', backend: 'cpu' },
    };
    for (const ok of [log, progress, finished, { ...finished, exitCode: -(2 ** 31) }])
      expect(decode(UpEvent, bytes(ok)).ok).toBe(true);
    for (const bad of [
      { ...log, seq: over },
      { ...log, dropped: over },
      { ...progress, seq: over },
      { ...finished, exitCode: over },
      { ...finished, exitCode: -over - 1 },
    ]) {
      expect(decode(UpEvent, bytes(bad)).ok).toBe(false);
    }
  });

  it('carries a release: an attempt given back by a stopping agent, with a bounded reason and nothing else', () => {
    const released = {
      type: 'job.released',
      v: 1,
      ...ids,
      reason: 'agent stopped: drain timeout of 30s',
      releasedAt: '2026-11-21T10:00:00.000Z',
    } as const;
    expect(decode(UpEvent, encode(JobReleased, released))).toEqual({ ok: true, value: released });
    expect(decode(UpEvent, bytes({ ...released, reason: 'x'.repeat(513) })).ok).toBe(false);
    expect(decode(UpEvent, bytes({ ...released, exitCode: 0 })).ok).toBe(false);
    const { reason: _, ...withoutReason } = released;
    expect(decode(UpEvent, bytes(withoutReason)).ok).toBe(false);
  });

  it('says in the heartbeat that an agent is stopping, and only as true', () => {
    const heartbeat = {
      type: 'agent.heartbeat',
      v: 1,
      agentId: ids.jobId,
      sentAt: '2026-11-21T10:00:00.000Z',
      running: [],
      freeSlots: 0,
      system: {
        hostname: 'h',
        os: 'Linux',
        arch: 'x64',
        cpus: 2,
        memoryBytes: 1,
        gpus: [],
        agentVersion: '0.1.0',
      },
    };
    expect(decode(AgentHeartbeat, bytes({ ...heartbeat, stopping: true })).ok).toBe(true);
    expect(decode(AgentHeartbeat, bytes(heartbeat)).ok).toBe(true);
    expect(decode(AgentHeartbeat, bytes({ ...heartbeat, stopping: false })).ok).toBe(false);
  });

  it('refuses to encode a message it would not accept', () => {
    expect(() => encode(JobFinished, { ...finished, exitCode: 1.5 })).toThrow();
  });
});
