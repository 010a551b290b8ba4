import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  encode,
  JobClaimReply,
  subjects,
  type AgentHeartbeat,
  type JobLog,
  type JobProgress,
} from '@hearth/contracts';
import { JetStreamApiError, type PubAck } from '@nats-io/jetstream';
import { jobFinished } from '@hearth/testing';
import type { Msg } from '@nats-io/transport-node';
import {
  EgressGuard,
  EgressRefusedError,
  InvalidReplyError,
  StreamFullError,
  type CoreTransport,
  type StreamTransport,
} from './guard.js';
import { EgressLedger } from './ledger.js';

const address = {
  tenantId: '7d1e1c8a-3b57-4a36-9a0e-0d8f8c7f3b10',
  agentId: 'a3c8b7e2-5d14-4f6a-8b9c-1e2d3f4a5b60',
};
const ref = {
  jobId: '0b6a3f3e-8d8e-4e8c-9a61-3c3b7e6c2d11',
  attemptId: '5f0f8c1c-1b7d-4f0e-8f6c-2d7c7d9e3a22',
  fencingToken: 3,
};
const heartbeat: AgentHeartbeat = {
  type: 'agent.heartbeat',
  v: 1,
  agentId: address.agentId,
  sentAt: new Date().toISOString(),
  running: [],
  freeSlots: 2,
  system: {
    hostname: 'gpu-node-secret-hostname',
    os: 'Linux 6.1',
    arch: 'x64',
    cpus: 8,
    memoryBytes: 1024,
    gpus: [],
    agentVersion: '0.1.0',
  },
};

interface Sent {
  subject: string;
  data: Uint8Array;
  opts?: unknown;
}

let dir: string;
let ledger: EgressLedger;
let published: Sent[];
let streamed: Sent[];
let requested: Sent[];
let replyWith: Uint8Array;
/** What the stream answers a publish with instead of its PubAck. */
let streamRefuses: Error | null;

function guard(): EgressGuard {
  const nc: CoreTransport = {
    publish: (subject, data) => void published.push({ subject, data: data as Uint8Array }),
    request: async (subject, data) => {
      requested.push({ subject, data: data as Uint8Array });
      return { data: replyWith } as Msg;
    },
  };
  const js: StreamTransport = {
    publish: async (subject, data, opts) => {
      if (streamRefuses) throw streamRefuses;
      streamed.push({ subject, data: data as Uint8Array, opts });
      return { stream: 'HEARTH_UP', seq: 1, duplicate: false } as PubAck;
    },
  };
  return new EgressGuard({ nc, js, ledger, address });
}

function ledgerLines(): Record<string, unknown>[] {
  const text = fs.readFileSync(path.join(dir, 'ledger.jsonl'), 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-guard-'));
  ledger = EgressLedger.open(path.join(dir, 'ledger.jsonl'));
  published = [];
  streamed = [];
  requested = [];
  replyWith = encode(JobClaimReply, { type: 'job.claim.reply', v: 1, ok: true });
  streamRefuses = null;
});
afterEach(() => {
  ledger.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('EgressGuard', () => {
  it('sends a valid heartbeat to this agent’s subject and records it in the ledger without the payload', () => {
    guard().heartbeat(heartbeat);
    expect(published).toHaveLength(1);
    expect(published[0].subject).toBe(subjects.heartbeat(address));
    const [entry] = ledgerLines();
    expect(Object.keys(entry).sort()).toEqual(['bytes', 'sha256', 'subject', 'time', 'type']);
    expect(entry).toMatchObject({
      subject: subjects.heartbeat(address),
      type: 'agent.heartbeat',
      bytes: published[0].data.byteLength,
      sha256: createHash('sha256').update(published[0].data).digest('hex'),
    });
    const raw = fs.readFileSync(path.join(dir, 'ledger.jsonl'), 'utf8');
    expect(raw).not.toContain('gpu-node-secret-hostname');
    expect(fs.statSync(path.join(dir, 'ledger.jsonl')).mode & 0o777).toBe(0o600);
    guard().heartbeat(heartbeat);
    expect(ledger.sent()).toEqual(
      new Map([['agent.heartbeat', { messages: 2, bytes: 2 * published[0].data.byteLength }]]),
    );
  });

  it('refuses a message with a field the contract does not have, and sends and records nothing', () => {
    const smuggled = { ...heartbeat, rows: ['alice,42,cancer'] } as unknown as AgentHeartbeat;
    expect(() => guard().heartbeat(smuggled)).toThrow(EgressRefusedError);
    expect(published).toHaveLength(0);
    expect(ledgerLines()).toHaveLength(0);
    expect(ledger.sent().size).toBe(0);
  });

  it('refuses a log line over the contract bound', async () => {
    const log = {
      type: 'job.log',
      v: 1,
      ...ref,
      seq: 0,
      lines: [{ stream: 'stdout', text: 'x'.repeat(5000) }],
      dropped: 0,
    } as JobLog;
    await expect(guard().event(log)).rejects.toThrow(EgressRefusedError);
    expect(streamed).toHaveLength(0);
    expect(ledgerLines()).toHaveLength(0);
  });

  it('publishes JobFinished through JetStream with an idempotent message id', async () => {
    const finished = jobFinished(ref);
    const ack = await guard().event(finished);
    expect(ack.stream).toBe('HEARTH_UP');
    expect(streamed[0].subject).toBe(subjects.events(address));
    expect(streamed[0].opts).toMatchObject({ msgID: `${ref.attemptId}.finished` });
    expect(ledgerLines()[0]).toMatchObject({ type: 'job.finished', subject: subjects.events(address) });
  });

  it('publishes JobProgress with its own message ids, and refuses progress that is not numbers', async () => {
    const g = guard();
    await g.event({
      type: 'job.progress',
      v: 1,
      ...ref,
      seq: 0,
      progress: { kind: 'train.backend', backend: 'wasm' },
    });
    await g.event({
      type: 'job.log',
      v: 1,
      ...ref,
      seq: 0,
      lines: [{ stream: 'stdout', text: 'hello' }],
      dropped: 0,
    });
    expect(streamed.map((s) => (s.opts as { msgID: string }).msgID)).toEqual([
      `${ref.attemptId}.progress.0`,
      `${ref.attemptId}.log.0`,
    ]);
    expect(ledgerLines()[0]).toMatchObject({ type: 'job.progress', subject: subjects.events(address) });
    const smuggled = {
      type: 'job.progress',
      v: 1,
      ...ref,
      seq: 1,
      progress: {
        kind: 'serve.metrics',
        metrics: {
          windowSeconds: 60,
          requests: 1,
          errors: 0,
          p50Ms: 1,
          p95Ms: 1,
          p99Ms: 1,
          body: '{"inputs":[1,2]}',
        },
      },
    } as unknown as JobProgress;
    await expect(g.event(smuggled)).rejects.toThrow(EgressRefusedError);
    expect(streamed).toHaveLength(2);
  });

  it('tells a stream full for this agent from other publish failures', async () => {
    const log: JobLog = { type: 'job.log', v: 1, ...ref, seq: 0, lines: [], dropped: 3 };
    // What nats-server 2.9 answers when the agent's subject holds max_msgs_per_subject (discard new).
    const full = { code: 503, err_code: 10077, description: 'maximum messages per subject exceeded' };
    streamRefuses = new JetStreamApiError(full);
    const refused = await guard()
      .event(log)
      .catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(StreamFullError);
    expect((refused as Error).message).toBe(
      'job.log refused by the stream: maximum messages per subject exceeded',
    );
    streamRefuses = new JetStreamApiError({
      code: 503,
      err_code: 10077,
      description: 'maximum bytes exceeded',
    });
    await expect(guard().event(log)).rejects.toThrow(StreamFullError);
    for (const other of [
      new Error('TIMEOUT'),
      new JetStreamApiError({
        code: 400,
        err_code: 10054,
        description: 'message size exceeds maximum allowed',
      }),
    ]) {
      streamRefuses = other;
      await expect(guard().event(log)).rejects.toBe(other);
    }
  });

  it('claims by request and returns the validated reply', async () => {
    replyWith = encode(JobClaimReply, { type: 'job.claim.reply', v: 1, ok: false, reason: 'stale attempt' });
    const reply = await guard().claim({ type: 'job.claim', v: 1, ...ref });
    expect(reply).toEqual({ type: 'job.claim.reply', v: 1, ok: false, reason: 'stale attempt' });
    expect(requested[0].subject).toBe(subjects.claim(address));
  });

  it('rejects a claim reply the contract does not allow', async () => {
    replyWith = new TextEncoder().encode('{"ok":true}');
    await expect(guard().claim({ type: 'job.claim', v: 1, ...ref })).rejects.toThrow(InvalidReplyError);
  });
});
