/**
 * What an agent reports about its attempts is untrusted input, checked against the job (found by
 * an audit; each case here once went through):
 * - a TRAIN result whose features, labels or metrics contradict the job registered a model version;
 *   a TRAIN job that "succeeded" without a result ended SUCCEEDED with no model;
 * - log lines and progress kept changing a job after its attempt had ended, and progress of
 *   another kind (train epochs on a COMMAND job) was applied;
 * - the same log batch delivered twice appended its lines twice;
 * - an agent that claimed and released a job in a loop kept it alive forever (maxAttempts 1, 8 attempts).
 * The agent here is a raw NATS client on its own subjects: exactly what a compromised agent can send.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import {
  AgentHeartbeat,
  consumers,
  DOWN_STREAM,
  encode,
  JobClaim,
  JobDispatch,
  JobFinished,
  JobLog,
  JobProgress,
  JobReleased,
  subjects,
  type TrainResult,
} from '@hearth/contracts';
import {
  agentHeartbeat,
  enrollAgent,
  jobFinished,
  createTestDatabase,
  startControlPlane,
  waitFor,
  type ControlPlane,
  type TestDatabase,
  SHARED_NATS_URL,
} from '@hearth/testing';

const NATS_URL = SHARED_NATS_URL;
const sha = 'b'.repeat(64);
let db: TestDatabase;
let cp: ControlPlane;
let nc: NatsConnection;
let js: JetStreamClient;

beforeAll(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({
    DATABASE_URL: db.appUrl,
    NATS_URL,
    AGENT_HEARTBEAT_SECONDS: '1',
    SWEEP_INTERVAL_SECONDS: '1',
  });
  nc = await connect({ servers: NATS_URL });
  js = jetstream(nc);
});

afterAll(async () => {
  await nc?.close();
  await cp?.stop();
  await db?.drop();
});

interface Job {
  state: string;
  stateReason: string | null;
  attempts: number;
  logTail: string;
  backend: string | null;
  trainEpochs: { epoch: number }[];
  result: string | null;
}
const JOB = `query($id: ID!) { job(id: $id) { state stateReason attempts logTail backend trainEpochs { epoch } result } }`;
type Ref = { jobId: string; attemptId: string; fencingToken: number };

/** An enrolled agent, driven by hand over NATS. */
async function fakeAgent(name: string) {
  const { client, address } = await enrollAgent(cp, db.appUrl, name);
  const consumer = await js.consumers.get(DOWN_STREAM, consumers.jobs(address.agentId));

  const agent = {
    client,
    heartbeat(running: Ref[] = []) {
      nc.publish(
        subjects.heartbeat(address),
        encode(
          AgentHeartbeat,
          agentHeartbeat(address.agentId, {
            running: running.map((r) => ({ attemptId: r.attemptId, fencingToken: r.fencingToken })),
          }),
        ),
      );
    },
    /** Takes the next dispatch (heartbeating meanwhile, so the agent has capacity) and claims it. */
    async takeNext(): Promise<Ref> {
      for (let i = 0; i < 20; i++) {
        agent.heartbeat();
        const msg = await consumer.next({ expires: 1000 });
        if (!msg) continue;
        msg.ack();
        const dispatch = JobDispatch.parse(msg.json());
        const ref = {
          jobId: dispatch.jobId,
          attemptId: dispatch.attemptId,
          fencingToken: dispatch.fencingToken,
        };
        const reply = await nc.request(
          subjects.claim(address),
          encode(JobClaim, { type: 'job.claim', v: 1, ...ref }),
          {
            timeout: 5000,
          },
        );
        expect(reply.json()).toMatchObject({ ok: true });
        return ref;
      }
      throw new Error('nothing dispatched to the agent');
    },
    async send(event: Parameters<typeof encode>[1], schema: Parameters<typeof encode>[0]) {
      await js.publish(subjects.events(address), encode(schema, event));
    },
    async log(ref: Ref, seq: number, text: string) {
      await agent.send(
        { type: 'job.log', v: 1, ...ref, seq, lines: [{ stream: 'stdout', text }], dropped: 0 },
        JobLog,
      );
    },
    async finish(ref: Ref, extra: Partial<JobFinished> = {}) {
      await agent.send(jobFinished(ref, extra), JobFinished);
    },
    async job(id: string) {
      return (await client.ok<{ job: Job }>(JOB, { id })).job;
    },
    /** Waits until the control plane logged that it refused a report about this attempt. */
    async refused(ref: Ref, reason: string) {
      await waitFor(
        () =>
          cp.proc.lines.some(
            (l) => l.includes('agent report rejected') && l.includes(ref.attemptId) && l.includes(reason),
          ),
        { timeoutMs: 10_000, what: `report refused: ${reason}` },
      );
    },
  };
  return agent;
}

async function until(agent: Awaited<ReturnType<typeof fakeAgent>>, id: string, done: (j: Job) => boolean) {
  let job!: Job;
  await waitFor(async () => done((job = await agent.job(id))), { timeoutMs: 15_000, what: `job ${id}` });
  return job;
}

const TRAIN = `mutation($t: TrainJobInput!) { submitJob(input: { kind: TRAIN, train: $t, maxAttempts: 1 }) { id } }`;
const trainInput = {
  modelName: 'churn',
  datasetUri: 'file:///srv/data/churn.csv',
  target: 'label',
  features: ['x1', 'x2'],
  task: 'BINARY',
  model: 'LOGISTIC',
  epochs: 2,
};

/** A result as the built-in trainer makes it for trainInput. */
function trainResult(): TrainResult {
  const signature = {
    inputs: [{ name: 'input', datatype: 'FP32' as const, shape: [-1, 2] }],
    outputs: [{ name: 'output', datatype: 'FP32' as const, shape: [-1, 1] }],
  };
  return {
    backend: 'wasm',
    datasetFingerprint: { sha256: sha, rows: 100 },
    metrics: { epoch: 2, loss: 0.3, valLoss: 0.35, accuracy: 0.9, auc: 0.95 },
    artifacts: [
      { uri: 'file:///srv/models/churn/model.onnx', sha256: sha, sizeBytes: 100, format: 'onnx', signature },
    ],
    featureNames: ['x1', 'x2'],
    labels: ['no', 'yes'],
  };
}

describe('a TRAIN result', () => {
  it('that contradicts the job fails the job with the reason, and registers nothing', async () => {
    const agent = await fakeAgent('Bogus results');
    const bogus: [Partial<TrainResult>, RegExp][] = [
      [{ featureNames: ['ssn', 'ssn'] }, /featureNames names a column more than once/],
      [
        { featureNames: ['ssn', 'salary'] },
        /featureNames \[ssn, salary\] are not the job's features \[x1, x2\]/,
      ],
      [{ labels: ['a', 'b', 'c'] }, /a binary model has 2 labels, not 3/],
      [
        { metrics: { epoch: 1000, loss: 0.1, valLoss: 0.1, accuracy: 1, auc: 1 } },
        /metrics are of epoch 1000; the job ran 2/,
      ],
      [
        { metrics: { epoch: 2, loss: -1e308, valLoss: 0.1, accuracy: 1, auc: 1 } },
        /a loss cannot be negative/,
      ],
      [{ backend: 'tfjs-node-gpu' }, /trained on tfjs-node-gpu, but the job reported wasm/],
    ];
    for (const [patch, reason] of bogus) {
      const { submitJob } = await agent.client.ok<{ submitJob: { id: string } }>(TRAIN, { t: trainInput });
      const ref = await agent.takeNext();
      await agent.send(
        { type: 'job.progress', v: 1, ...ref, seq: 0, progress: { kind: 'train.backend', backend: 'wasm' } },
        JobProgress,
      );
      await agent.finish(ref, { result: { kind: 'train', train: { ...trainResult(), ...patch } } });
      const job = await until(agent, submitJob.id, (j) => j.state !== 'RUNNING');
      expect([patch, job.state, job.stateReason]).toEqual([
        patch,
        'FAILED',
        expect.stringMatching(new RegExp(`^the agent's result was refused: ${reason.source}`)),
      ]);
      expect(job.result).toBeNull();
    }
    const { models } = await agent.client.ok<{ models: { name: string }[] }>(`{ models { name } }`);
    expect(models).toEqual([]);

    // The same job with a consistent result registers its version: the checks refuse only the bogus.
    const { submitJob } = await agent.client.ok<{ submitJob: { id: string } }>(TRAIN, { t: trainInput });
    const ref = await agent.takeNext();
    await agent.finish(ref, { result: { kind: 'train', train: trainResult() } });
    const job = await until(agent, submitJob.id, (j) => j.state !== 'RUNNING');
    expect([job.state, job.stateReason]).toEqual(['SUCCEEDED', 'registered churn v1']);
  });

  it('is required: a TRAIN job that succeeds without one fails, saying so', async () => {
    const agent = await fakeAgent('No result');
    const { submitJob } = await agent.client.ok<{ submitJob: { id: string } }>(TRAIN, { t: trainInput });
    const ref = await agent.takeNext();
    await agent.finish(ref);
    const job = await until(agent, submitJob.id, (j) => j.state !== 'RUNNING');
    expect([job.state, job.stateReason]).toEqual([
      'FAILED',
      "the agent's result was refused: it reported success without a train result",
    ]);
    // A failure needs no result: it takes the one-round-trip path as before.
    const second = await agent.client.ok<{ submitJob: { id: string } }>(TRAIN, { t: trainInput });
    const ref2 = await agent.takeNext();
    await agent.finish(ref2, { outcome: 'FAILED', exitCode: null, reason: 'the target column is missing' });
    const failed = await until(agent, second.submitJob.id, (j) => j.state !== 'RUNNING');
    expect([failed.state, failed.stateReason]).toEqual(['FAILED', 'the target column is missing']);
  });
});

describe('log lines and progress', () => {
  it('are applied once, only while the attempt runs, and only of the job kind', async () => {
    const agent = await fakeAgent('Late reports');
    const { submitJob } = await agent.client.ok<{ submitJob: { id: string } }>(
      `mutation { submitJob(input: { kind: COMMAND, command: ["true"], maxAttempts: 1 }) { id } }`,
    );
    const ref = await agent.takeNext();
    await agent.log(ref, 0, 'line-0');
    await agent.log(ref, 0, 'line-0'); // redelivered
    await agent.log(ref, 1, 'line-1');
    await agent.send(
      {
        type: 'job.progress',
        v: 1,
        ...ref,
        seq: 0,
        progress: { kind: 'train.epoch', metrics: { epoch: 1, loss: -5, valLoss: null } },
      },
      JobProgress,
    );
    await agent.refused(ref, 'a COMMAND job does not report train.epoch');
    await agent.finish(ref);
    await until(agent, submitJob.id, (j) => j.state === 'SUCCEEDED');
    await agent.log(ref, 2, 'INJECTED AFTER SUCCESS');
    await agent.refused(ref, 'attempt is SUCCEEDED');

    const job = await agent.job(submitJob.id);
    expect(job.logTail).toBe('line-0\nline-1\n');
    expect(job.trainEpochs).toEqual([]);
  });
});

describe('an agent that keeps giving a job back', () => {
  it('cannot keep it alive forever: past the hourly bound the job fails', async () => {
    const agent = await fakeAgent('Release loop');
    const { submitJob } = await agent.client.ok<{ submitJob: { id: string } }>(
      `mutation { submitJob(input: { kind: COMMAND, command: ["true"], maxAttempts: 1 }) { id } }`,
    );
    for (let round = 1; round <= 6; round++) {
      const ref = await agent.takeNext();
      await agent.send(
        {
          type: 'job.released',
          v: 1,
          ...ref,
          reason: 'agent stopped: drain timeout of 30s',
          releasedAt: new Date().toISOString(),
        },
        JobReleased,
      );
      const job = await until(agent, submitJob.id, (j) => j.state !== 'RUNNING');
      if (round < 6) expect([round, job.state]).toEqual([round, expect.stringMatching(/QUEUED|DISPATCHED/)]);
      else {
        expect(job.state).toBe('FAILED');
        expect(job.stateReason).toMatch(/^given back by its agents 6 times within an hour/);
        expect(job.attempts).toBe(6);
      }
    }
  });
});
