/**
 * Messages from agents are untrusted input (found by an audit, each case here once went through):
 * - one agent (broken or compromised) flooding heartbeats: each used to open its own database
 *   transaction, without bound, and another organization's API calls and agents waited for the
 *   pool behind them (an API call failed with an internal error). Now each agent's heartbeats
 *   beyond its rate are dropped before any work, agent traffic takes at most half the pool, and
 *   the other organization does not notice;
 * - a result a revoked agent sent (or that waited in the stream when it was revoked) was applied.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import {
  AgentHeartbeat,
  consumers,
  DOWN_STREAM,
  encode,
  JobClaim,
  JobDispatch,
  JobFinished,
  subjects,
} from '@hearth/contracts';
import {
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  joinAgent,
  metricValue,
  scrapePrometheus,
  waitFor,
  startControlPlane,
  type ControlPlane,
  type TestDatabase,
} from '@hearth/testing';

const NATS_URL = 'nats://127.0.0.1:4222';
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

async function enrolledAgent(name: string) {
  const org = await createOrganization(db.appUrl, name);
  const client = new GraphQLClient(cp.graphqlUrl, org.adminToken);
  const { createJoinToken } = await client.ok<{ createJoinToken: { token: string } }>(
    `mutation { createJoinToken { token } }`,
  );
  const joined = await joinAgent(cp.url, createJoinToken.token);
  if (!joined.id) throw new Error(`join failed: ${joined.stderr}`);
  return { client, address: { tenantId: org.organizationId, agentId: joined.id } };
}

function heartbeat(agentId: string): Uint8Array {
  return encode(AgentHeartbeat, {
    type: 'agent.heartbeat',
    v: 1,
    agentId,
    sentAt: new Date().toISOString(),
    running: [],
    freeSlots: 1,
    system: {
      hostname: 'flood',
      os: 'linux',
      arch: 'x64',
      cpus: 1,
      memoryBytes: 1,
      gpus: [],
      agentVersion: '0.1.0',
    },
  });
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
    const js = jetstream(nc);
    nc.publish(subjects.heartbeat(address), heartbeat(address.agentId));
    const { submitJob } = await client.ok<{ submitJob: { id: string } }>(
      `mutation { submitJob(input: { kind: COMMAND, command: ["true"], maxAttempts: 1 }) { id } }`,
    );
    const consumer = await js.consumers.get(DOWN_STREAM, consumers.jobs(address.agentId));
    const msg = await consumer.next({ expires: 10_000 });
    if (!msg) throw new Error('no dispatch');
    msg.ack();
    const dispatch = JobDispatch.parse(msg.json());
    const ref = { jobId: dispatch.jobId, attemptId: dispatch.attemptId, fencingToken: dispatch.fencingToken };
    const claimed = await nc.request(
      subjects.claim(address),
      encode(JobClaim, { type: 'job.claim', v: 1, ...ref }),
      { timeout: 5000 },
    );
    expect(claimed.json()).toMatchObject({ ok: true });

    await client.ok(`mutation($id: ID!) { revokeAgent(id: $id) { state } }`, { id: address.agentId });
    await js.publish(
      subjects.events(address),
      encode(JobFinished, {
        type: 'job.finished',
        v: 1,
        ...ref,
        outcome: 'SUCCEEDED',
        exitCode: 0,
        signal: null,
        reason: null,
        finishedAt: new Date().toISOString(),
      }),
    );
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
        id: submitJob.id,
      },
    );
    expect(job.state).not.toBe('SUCCEEDED');
  });
});
