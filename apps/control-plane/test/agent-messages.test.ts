/**
 * Messages from agents are untrusted input (found by an audit, each case here once went through):
 * - one agent (broken or compromised) flooding heartbeats: each used to open its own database
 *   transaction, without bound, and another organization's API calls and agents waited for the
 *   pool behind them (an API call failed with an internal error). Now each agent's heartbeats
 *   beyond its rate are dropped before any work, agent traffic takes at most half the pool, and
 *   the other organization does not notice;
 * - a result a revoked agent sent (or that waited in the stream when it was revoked) was applied;
 * - one agent flooding its job events: the stream kept all of them, without bound, and every other
 *   organization's job events waited behind them (a job's end 6.6 s late behind 10,000). Now the
 *   stream holds a bounded number per agent and refuses the rest, and the control plane takes the
 *   agents' events in turns, setting the rest of a backlog aside, so the others' go through at once.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import {
  AgentHeartbeat,
  consumers,
  DOWN_STREAM,
  encode,
  JobClaim,
  JobDispatch,
  JobFinished,
  JobLog,
  subjects,
  UP_CONSUMER,
  UP_STREAM,
  type AgentAddress,
} from '@hearth/contracts';
import {
  agentHeartbeat,
  enrollAgent,
  jobFinished,
  createTestDatabase,
  GraphQLClient,
  metricValue,
  scrapePrometheus,
  waitFor,
  startControlPlane,
  type ControlPlane,
  type TestDatabase,
  SHARED_NATS_URL,
} from '@hearth/testing';
import { startNatsServer, type RunningNatsServer } from '../src/platform/messaging/nats-server.js';
import { UP_LIMITS, UP_MAX_DELIVER } from '../src/platform/messaging/nats.service.js';

const NATS_URL = SHARED_NATS_URL;
let db: TestDatabase;
let cp: ControlPlane;
let nc: NatsConnection;

beforeAll(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL, AGENT_HEARTBEAT_SECONDS: '2' });
  nc = await connect({ servers: NATS_URL });
});

afterAll(async () => {
  await nc?.close();
  await cp?.stop();
  await db?.drop();
});

function enrolledAgent(name: string, on = { db, cp }) {
  return enrollAgent(on.cp, on.db.appUrl, name);
}

/** Submits a command job, takes its dispatch as the agent would and claims it; returns the attempt. */
async function claimedJob(client: GraphQLClient, address: AgentAddress, conn: NatsConnection) {
  conn.publish(subjects.heartbeat(address), heartbeat(address.agentId));
  const { submitJob } = await client.ok<{ submitJob: { id: string } }>(
    `mutation { submitJob(input: { kind: COMMAND, command: ["true"], maxAttempts: 1 }) { id } }`,
  );
  const consumer = await jetstream(conn).consumers.get(DOWN_STREAM, consumers.jobs(address.agentId));
  const msg = await consumer.next({ expires: 10_000 });
  if (!msg) throw new Error('no dispatch');
  msg.ack();
  const dispatch = JobDispatch.parse(msg.json());
  const ref = { jobId: dispatch.jobId, attemptId: dispatch.attemptId, fencingToken: dispatch.fencingToken };
  const claimed = await conn.request(
    subjects.claim(address),
    encode(JobClaim, { type: 'job.claim', v: 1, ...ref }),
    { timeout: 5000 },
  );
  expect(claimed.json()).toMatchObject({ ok: true });
  expect(ref.jobId).toBe(submitJob.id);
  return ref;
}

function finished(ref: { jobId: string; attemptId: string; fencingToken: number }): Uint8Array {
  return encode(JobFinished, jobFinished(ref));
}

function heartbeat(agentId: string): Uint8Array {
  return encode(AgentHeartbeat, agentHeartbeat(agentId));
}

describe('an agent flooding heartbeats', () => {
  it('is shed before any database work, and another organization does not notice', async () => {
    const noisy = await enrolledAgent('Noisy');
    const quiet = await enrolledAgent('Quiet');
    nc.publish(subjects.heartbeat(quiet.address), heartbeat(quiet.address.agentId));

    const flood = heartbeat(noisy.address.agentId);
    for (let i = 0; i < 20_000; i++) {
      nc.publish(subjects.heartbeat(noisy.address), flood);
      if (i % 1000 === 0) await nc.flush();
    }
    await nc.flush();
    // Meanwhile the other organization's API answers, and its agent's heartbeats are applied.
    const floodEnded = Date.now();
    const answers: (string | undefined)[] = [];
    let lastHeartbeatAt = '';
    for (let i = 0; i < 5; i++) {
      nc.publish(subjects.heartbeat(quiet.address), heartbeat(quiet.address.agentId));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const r = await quiet.client.request(`{ agents { state lastHeartbeatAt } }`);
      const [agent] =
        (r.data as { agents: { state: string; lastHeartbeatAt: string }[] } | null)?.agents ?? [];
      answers.push(r.errors?.[0]?.extensions?.code ?? agent.state);
      lastHeartbeatAt = agent?.lastHeartbeatAt ?? lastHeartbeatAt;
    }
    expect(answers).toEqual(Array(5).fill('ONLINE'));
    expect(Date.parse(lastHeartbeatAt)).toBeGreaterThanOrEqual(floodEnded - 1000);

    const samples = await scrapePrometheus(`${cp.url}/metrics`);
    const shed = metricValue(samples, 'hearth_agent_messages_shed_total', {
      kind: 'heartbeat',
      reason: 'rate limited',
    });
    expect(shed).toBeGreaterThanOrEqual(20_000 - 10);
    expect(cp.proc.lines.filter((l) => l.includes('heartbeat failed'))).toEqual([]);
    expect(cp.proc.lines.filter((l) => l.includes('"unexpected error"'))).toEqual([]);
  });
});

describe('a revoked agent', () => {
  it('has nothing it sends applied, even a result that waited in the stream', async () => {
    const { client, address } = await enrolledAgent('Revoked');
    const ref = await claimedJob(client, address, nc);

    await client.ok(`mutation($id: ID!) { revokeAgent(id: $id) { state } }`, { id: address.agentId });
    await jetstream(nc).publish(subjects.events(address), finished(ref));
    await waitFor(
      () => cp.proc.lines.some((l) => l.includes('"agent revoked"') && l.includes(ref.attemptId)),
      {
        timeoutMs: 10_000,
        what: 'the result refused',
      },
    );
    const { job } = await client.ok<{ job: { state: string } }>(
      `query($id: ID!) { job(id: $id) { state } }`,
      {
        id: ref.jobId,
      },
    );
    expect(job.state).not.toBe('SUCCEEDED');
  });
});

/**
 * Its own nats-server, database and control plane: the flood must not reach the shared server's
 * stream, and the control plane is stopped while the backlog is made, as in an outage.
 */
describe('an agent flooding its job events', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-up-flood-'));
  let server: RunningNatsServer;
  let fdb: TestDatabase;
  let fcp: ControlPlane | undefined;
  let conn: NatsConnection;
  const startIt = () =>
    startControlPlane({
      DATABASE_URL: fdb.appUrl,
      NATS_URL: server.url,
      AGENT_HEARTBEAT_SECONDS: '2',
      // The attempts stay theirs while the control plane is away (no heartbeats reach it).
      LEASE_SECONDS: '600',
    });

  beforeAll(async () => {
    server = await startNatsServer({ port: 0, host: '127.0.0.1', dir });
    conn = await connect({ servers: server.url });
    // The UP stream and its consumer as the version before limits made them.
    const jsm = await jetstreamManager(conn);
    await jsm.streams.add({
      name: UP_STREAM,
      subjects: [subjects.wildcard.events],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      duplicate_window: nanos(10 * 60_000),
      max_msg_size: 128 * 1024,
    });
    await jsm.consumers.add(UP_STREAM, {
      durable_name: UP_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(30_000),
      max_deliver: 20,
      max_ack_pending: 10_000,
    });
    fdb = await createTestDatabase();
    fcp = await startIt();
  });

  afterAll(async () => {
    await conn?.close();
    await fcp?.stop();
    await server?.stop();
    await fdb?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('has the stream made by an older version brought to per-agent limits in place', async () => {
    const jsm = await jetstreamManager(conn);
    const stream = await jsm.streams.info(UP_STREAM);
    expect(stream.config).toMatchObject({
      max_msgs_per_subject: UP_LIMITS.maxMessagesPerAgent,
      max_bytes: UP_LIMITS.maxBytes,
      max_age: nanos(UP_LIMITS.maxAgeMs),
      discard: DiscardPolicy.New,
      discard_new_per_subject: true,
    });
    const consumer = await jsm.consumers.info(UP_STREAM, UP_CONSUMER);
    expect(consumer.config.max_deliver).toBe(UP_MAX_DELIVER);
    expect(consumer.config.max_ack_pending).toBeGreaterThanOrEqual(10 * UP_LIMITS.maxMessagesPerAgent);
  });

  it("holds its backlog to its share, and another organization's job ends at once behind it", async () => {
    const on = { db: fdb, cp: fcp! };
    const noisy = await enrolledAgent('Noisy', on);
    const victim = await enrolledAgent('Victim', on);
    const orderly = await enrolledAgent('Orderly', on);
    const victimJob = await claimedJob(victim.client, victim.address, conn);
    const orderlyJob = await claimedJob(orderly.client, orderly.address, conn);

    // The control plane is away; the agents' events wait in the stream.
    await fcp!.stop();
    fcp = undefined;
    const js = jetstream(conn);
    const bogusLog = (seq: number) =>
      encode(JobLog, {
        type: 'job.log',
        v: 1,
        jobId: randomUUID(),
        attemptId: randomUUID(),
        fencingToken: 1,
        seq,
        lines: [{ stream: 'stdout', text: 'flood' }],
        dropped: 0,
      });
    const extra = 500;
    let refused = 0;
    for (let i = 0; i < UP_LIMITS.maxMessagesPerAgent + extra; i += 500) {
      const sends = Array.from({ length: 500 }, (_, j) =>
        js.publish(subjects.events(noisy.address), bogusLog(i + j)),
      );
      for (const r of await Promise.allSettled(sends)) {
        if (r.status === 'fulfilled') continue;
        expect(r.reason).toBeInstanceOf(JetStreamApiError);
        expect((r.reason as JetStreamApiError).code).toBe(10077); // what the agent tells apart
        refused++;
      }
    }
    expect(refused).toBe(extra);
    const jsm = await jetstreamManager(conn);
    const stored = async (a: AgentAddress) => {
      const info = await jsm.streams.info(UP_STREAM, { subjects_filter: subjects.events(a) });
      return info.state.subjects?.[subjects.events(a)] ?? 0;
    };
    expect(await stored(noisy.address)).toBe(UP_LIMITS.maxMessagesPerAgent);

    // A real agent's backlog of its own, past its share of the control plane's slots: 600 log
    // batches and the end of one job, which must still be applied in order.
    const lines = Array.from({ length: 600 }, (_, i) => `orderly ${i}`);
    for (let i = 0; i < lines.length; i++) {
      await js.publish(
        subjects.events(orderly.address),
        encode(JobLog, {
          type: 'job.log',
          v: 1,
          ...orderlyJob,
          seq: i,
          lines: [{ stream: 'stdout', text: lines[i] }],
          dropped: 0,
        }),
      );
    }
    await js.publish(subjects.events(orderly.address), finished(orderlyJob));
    // The other organization's job ends, behind everything above.
    await js.publish(subjects.events(victim.address), finished(victimJob));

    fcp = await startIt();
    const listening = Date.now();
    const victimClient = new GraphQLClient(fcp.graphqlUrl, victim.token);
    const getState = async (client: GraphQLClient, id: string) =>
      (await client.ok<{ job: { state: string } }>(`query($id: ID!) { job(id: $id) { state } }`, { id })).job
        .state;
    await waitFor(async () => (await getState(victimClient, victimJob.jobId)) === 'SUCCEEDED', {
      timeoutMs: 60_000,
      intervalMs: 50,
      what: "the other organization's job to succeed",
    });
    const latencyMs = Date.now() - listening;
    const noisyLeft = await stored(noisy.address);
    console.log(`victim's job SUCCEEDED ${latencyMs} ms after the restart; noisy backlog left: ${noisyLeft}`);
    // Before lanes it waited for the whole backlog: 11 to 16 s here, with nothing of it left.
    expect(noisyLeft).toBeGreaterThan(UP_LIMITS.maxMessagesPerAgent / 2);
    expect(latencyMs).toBeLessThan(3000);

    // The backlogs set aside are neither lost nor reordered: the orderly job's lines arrive all, in
    // order, before its end; and every bogus event is handled (refused) and leaves the stream.
    const orderlyClient = new GraphQLClient(fcp.graphqlUrl, orderly.token);
    const job = await waitFor(
      async () => {
        const { job } = await orderlyClient.ok<{ job: { state: string; logTail: string } }>(
          `query($id: ID!) { job(id: $id) { state logTail } }`,
          { id: orderlyJob.jobId },
        );
        return job.state === 'SUCCEEDED' ? job : undefined;
      },
      { timeoutMs: 60_000, what: "the orderly agent's job to succeed" },
    );
    expect(job.logTail).toBe(lines.map((l) => `${l}\n`).join(''));
    await waitFor(async () => (await jsm.streams.info(UP_STREAM)).state.messages === 0, {
      timeoutMs: 90_000,
      intervalMs: 500,
      what: 'the flood to be consumed',
    });
    const samples = await scrapePrometheus(`${fcp.url}/metrics`);
    expect(
      metricValue(samples, 'hearth_agent_messages_shed_total', { kind: 'event', reason: 'set aside' }),
    ).toBeGreaterThan(0);
    expect(fcp.proc.lines.filter((l) => l.includes('for the last time'))).toEqual([]);
  }, 180_000);
});
