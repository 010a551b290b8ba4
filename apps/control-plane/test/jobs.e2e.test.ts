/**
 * The round trip, end to end: a real control plane (`hearth serve`), a real agent enrolled with
 * `hearth-agent join` and running as its own process, real Postgres and nats-server. Users see jobs
 * through the GraphQL API exactly as asserted here.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { hostname } from 'node:os';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { subjects } from '@hearth/contracts';
import {
  collect,
  createOrganization,
  createTestDatabase,
  getJob,
  GraphQLClient,
  joinAgent,
  query,
  startAgent,
  startControlPlane,
  waitFor,
  waitForJob,
  type ControlPlane,
  type TestAgent,
  type TestDatabase,
  SHARED_NATS_URL,
} from '@hearth/testing';

const NATS_URL = SHARED_NATS_URL;
const JOB_FIELDS = `id state stateReason exitCode attempts logTail agent { id hostname } createdAt startedAt finishedAt`;

interface Job {
  id: string;
  state: string;
  stateReason: string | null;
  exitCode: number | null;
  attempts: number;
  logTail: string;
  agent: { id: string; hostname: string } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

let db: TestDatabase;
let cp: ControlPlane;
let a: GraphQLClient;
let b: GraphQLClient;
let agent: TestAgent;
let nc: NatsConnection;
let orgA: string;

async function submit(client: GraphQLClient, command: string[], extra = ''): Promise<Job> {
  const r = await client.ok<{ submitJob: Job }>(
    `mutation($c: [String!]!) { submitJob(input: { kind: COMMAND, command: $c ${extra} }) { ${JOB_FIELDS} } }`,
    { c: command },
  );
  return r.submitJob;
}

const job = (client: GraphQLClient, id: string) => getJob<Job>(client, id, JOB_FIELDS);
const until = (client: GraphQLClient, id: string, states: string[], timeoutMs = 20_000) =>
  waitForJob<Job>(client, id, states, JOB_FIELDS, timeoutMs);

beforeAll(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL, CANCEL_GRACE_SECONDS: '2' });
  const A = await createOrganization(db.appUrl, 'Round Trip A');
  const B = await createOrganization(db.appUrl, 'Round Trip B');
  orgA = A.organizationId;
  a = new GraphQLClient(cp.graphqlUrl, A.adminToken);
  b = new GraphQLClient(cp.graphqlUrl, B.adminToken);
  const { createJoinToken } = await a.ok<{ createJoinToken: { token: string } }>(
    `mutation { createJoinToken(ttlSeconds: 600) { token } }`,
  );
  agent = await startAgent(cp.url, createJoinToken.token, {
    labels: { pool: 'e2e' },
    args: ['--max-jobs', '4'],
  });
  await waitFor(
    async () =>
      (await a.ok<{ agents: { state: string }[] }>(`{ agents { state } }`)).agents[0]?.state === 'ONLINE',
    {
      what: 'the agent to come online',
    },
  );
  nc = await connect({ servers: NATS_URL });
});

afterAll(async () => {
  await agent?.proc.stop();
  await nc?.close();
  await cp?.stop();
  await db?.drop();
});

describe('agents', () => {
  it('shows the enrolled agent ONLINE with what it reported about its machine', async () => {
    const { agents } = await a.ok<{ agents: Record<string, unknown>[] }>(
      `{ agents { id state hostname os arch cpus memoryBytes gpus { name } agentVersion labels { key value } lastHeartbeatAt } }`,
    );
    expect(agents).toHaveLength(1);
    expect(agents[0]).toMatchObject({
      id: agent.id,
      state: 'ONLINE',
      hostname: hostname(),
      gpus: [],
      labels: [{ key: 'pool', value: 'e2e' }],
    });
    expect(agents[0].cpus).toBeGreaterThan(0);
    expect(agents[0].memoryBytes).toBeGreaterThan(0);
    expect(Date.now() - Date.parse(agents[0].lastHeartbeatAt as string)).toBeLessThan(10_000);
  });

  it("shows another organization none of this one's agents", async () => {
    expect((await b.ok<{ agents: unknown[] }>(`{ agents { id } }`)).agents).toEqual([]);
    expect(await b.errorCode(`mutation($id: ID!) { revokeAgent(id: $id) { id } }`, { id: agent.id })).toBe(
      'NOT_FOUND',
    );
  });

  it('refuses a reused, an expired and a made-up join token', async () => {
    const { createJoinToken } = await a.ok<{ createJoinToken: { token: string } }>(
      `mutation { createJoinToken { token } }`,
    );
    const first = await joinAgent(cp.url, createJoinToken.token);
    expect(first.code).toBe(0);
    const again = await joinAgent(cp.url, createJoinToken.token);
    expect(again.code).not.toBe(0);
    expect(again.stderr + again.stdout).toMatch(/already used/);

    const expiring = await a.ok<{ createJoinToken: { token: string } }>(
      `mutation { createJoinToken(ttlSeconds: 60) { token } }`,
    );
    await query(
      db.adminUrl,
      `UPDATE join_tokens SET expires_at = now() - interval '1 second' WHERE used_at IS NULL`,
    );
    const late = await joinAgent(cp.url, expiring.createJoinToken.token);
    expect(late.code).not.toBe(0);
    expect(late.stderr + late.stdout).toMatch(/expired/);

    const madeUp = await joinAgent(cp.url, 'hjt_not-a-real-token');
    expect(madeUp.code).not.toBe(0);
    expect(madeUp.stderr + madeUp.stdout).toMatch(/invalid/);

    expect(await a.errorCode(`mutation { createJoinToken(ttlSeconds: 5) { token } }`)).toBe('BAD_USER_INPUT');
    // The agent that joined but never ran is not running anything, and is OFFLINE.
    const { agents } = await a.ok<{ agents: { id: string; state: string }[] }>(`{ agents { id state } }`);
    expect(agents.find((x) => x.id === first.id)?.state).toBe('OFFLINE');
  });
});

describe('jobs', () => {
  it('runs a command on the agent and reports success with its output', async () => {
    const submitted = await submit(a, [
      'node',
      '-e',
      'console.log("hello from " + process.env.HEARTH_JOB_ID)',
    ]);
    expect(['DISPATCHED', 'RUNNING', 'SUCCEEDED']).toContain(submitted.state);
    const done = await until(a, submitted.id, ['SUCCEEDED', 'FAILED']);
    expect(done).toMatchObject({
      state: 'SUCCEEDED',
      exitCode: 0,
      attempts: 1,
      agent: { id: agent.id, hostname: hostname() },
    });
    await waitFor(async () => (await job(a, submitted.id)).logTail.includes(`hello from ${submitted.id}`), {
      what: 'the log tail',
    });
    expect(Date.parse(done.startedAt!)).toBeLessThanOrEqual(Date.parse(done.finishedAt!));
  });

  it('reports a failure with the exit code', async () => {
    const submitted = await submit(a, ['node', '-e', 'console.error("bad input"); process.exit(3)']);
    const done = await until(a, submitted.id, ['SUCCEEDED', 'FAILED']);
    expect(done).toMatchObject({ state: 'FAILED', exitCode: 3, attempts: 1 });
  });

  it('runs the command without a shell', async () => {
    const submitted = await submit(a, ['echo', '$HOME && echo injected']);
    const done = await until(a, submitted.id, ['SUCCEEDED', 'FAILED']);
    expect(done.state).toBe('SUCCEEDED');
    await waitFor(async () => (await job(a, submitted.id)).logTail.includes('$HOME && echo injected'), {
      what: 'the literal text',
    });
  });

  it('keeps the log tail of a job that prints binary output (NUL bytes, bytes that are not UTF-8)', async () => {
    const submitted = await submit(a, [
      'node',
      '-e',
      'process.stdout.write(Buffer.from([0x62, 0x69, 0x6e, 0x00, 0xff, 0x0a])); console.log("after binary")',
    ]);
    const done = await until(a, submitted.id, ['SUCCEEDED', 'FAILED']);
    expect(done.state).toBe('SUCCEEDED');
    await waitFor(async () => (await job(a, submitted.id)).logTail.includes('after binary'), {
      what: 'the log tail',
    });
    expect((await job(a, submitted.id)).logTail).toContain('bin\uFFFD\uFFFD\nafter binary');
  });

  it('reports a program that does not exist as FAILED with a reason', async () => {
    const submitted = await submit(a, ['hearth-no-such-program-xyz']);
    const done = await until(a, submitted.id, ['SUCCEEDED', 'FAILED']);
    expect(done.state).toBe('FAILED');
    // Found missing by the agent before it claims the job: nothing was started.
    expect(done.stateReason).toBe("the program hearth-no-such-program-xyz is not found on this agent's PATH");
  });

  it('cancels a running job (SIGTERM, then SIGKILL after the grace period)', async () => {
    const submitted = await submit(a, [
      'node',
      '-e',
      'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000)',
    ]);
    await until(a, submitted.id, ['RUNNING']);
    const cancelled = await a.ok<{ cancelJob: Job }>(
      `mutation($id: ID!) { cancelJob(id: $id) { ${JOB_FIELDS} } }`,
      { id: submitted.id },
    );
    expect(cancelled.cancelJob.stateReason).toBe('cancel requested');
    const done = await until(a, submitted.id, ['CANCELLED', 'FAILED', 'SUCCEEDED'], 15_000);
    expect(done.state).toBe('CANCELLED');
  });

  it('cancels a queued job at once', async () => {
    const submitted = await submit(
      a,
      ['true'],
      `agentSelector: { labels: [{ key: "pool", value: "nowhere" }] }`,
    );
    expect(submitted.state).toBe('QUEUED');
    const r = await a.ok<{ cancelJob: Job }>(
      `mutation($id: ID!) { cancelJob(id: $id) { state finishedAt } }`,
      { id: submitted.id },
    );
    expect(r.cancelJob.state).toBe('CANCELLED');
    expect(r.cancelJob.finishedAt).not.toBeNull();
  });

  it('times a job out', async () => {
    const submitted = await submit(a, ['node', '-e', 'setTimeout(() => {}, 60000)'], 'timeoutSeconds: 1');
    const done = await until(a, submitted.id, ['TIMED_OUT', 'FAILED', 'SUCCEEDED'], 15_000);
    expect(done.state).toBe('TIMED_OUT');
  });

  it('streams a job from QUEUED to SUCCEEDED over graphql-ws', async () => {
    const submitted = await submit(
      a,
      ['node', '-e', 'setTimeout(() => {}, 300)'],
      `agentSelector: { labels: [{ key: "pool", value: "later" }] }`,
    );
    const ws = a.ws();
    const events = collect<{ jobUpdated: { state: string } }>(
      ws,
      `subscription($id: ID!) { jobUpdated(id: $id) { state } }`,
      { id: submitted.id },
      (ev) => ev.at(-1)?.jobUpdated.state === 'SUCCEEDED',
    );
    // Nothing matches "later" until the label exists: relabel by running a second agent that has it.
    const { createJoinToken } = await a.ok<{ createJoinToken: { token: string } }>(
      `mutation { createJoinToken { token } }`,
    );
    const later = await startAgent(cp.url, createJoinToken.token, { labels: { pool: 'later' } });
    try {
      const states = (await events).map((e) => e.jobUpdated.state);
      expect(states[0]).toBe('QUEUED');
      expect(states.at(-1)).toBe('SUCCEEDED');
      expect(states).toContain('RUNNING');
    } finally {
      await ws.dispose();
      await later.proc.stop();
    }
  });

  it("refuses to stream another organization's job", async () => {
    const submitted = await submit(a, ['true']);
    const ws = b.ws();
    try {
      await expect(
        collect(
          ws,
          `subscription($id: ID!) { jobUpdated(id: $id) { state } }`,
          { id: submitted.id },
          () => true,
        ),
      ).rejects.toThrow(/not found/);
    } finally {
      await ws.dispose();
    }
  });

  it('pages through jobs newest first, with a filter', async () => {
    const page1 = await a.ok<{
      jobs: {
        edges: { cursor: string; node: { id: string } }[];
        pageInfo: { hasNextPage: boolean; endCursor: string };
      };
    }>(`{ jobs(first: 3) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`);
    expect(page1.jobs.edges).toHaveLength(3);
    expect(page1.jobs.pageInfo.hasNextPage).toBe(true);
    const page2 = await a.ok<{ jobs: { edges: { node: { id: string } }[] } }>(
      `query($after: String) { jobs(first: 3, after: $after) { edges { node { id } } } }`,
      { after: page1.jobs.pageInfo.endCursor },
    );
    const ids1 = page1.jobs.edges.map((e) => e.node.id);
    const ids2 = page2.jobs.edges.map((e) => e.node.id);
    expect(ids2.filter((id) => ids1.includes(id))).toEqual([]);
    expect([...ids1, ...ids2]).toEqual([...ids1, ...ids2].sort().reverse());
    const failed = await a.ok<{ jobs: { edges: { node: { state: string } }[] } }>(
      `{ jobs(filter: { states: [FAILED] }) { edges { node { state } } } }`,
    );
    expect(failed.jobs.edges.length).toBeGreaterThan(0);
    expect(new Set(failed.jobs.edges.map((e) => e.node.state))).toEqual(new Set(['FAILED']));
    expect(await a.errorCode(`{ jobs(after: "garbage") { edges { cursor } } }`)).toBe('BAD_USER_INPUT');
  });
});

describe('logs', () => {
  it('carry the request id and the tenant id on the lines of a request', async () => {
    const requestId = `e2e-${Date.now()}`;
    const res = await fetch(cp.graphqlUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${a.token}`,
        'x-request-id': requestId,
      },
      body: JSON.stringify({ query: '{ agents { id } }' }),
    });
    expect(res.headers.get('x-request-id')).toBe(requestId);
    const line = await cp.proc.waitForLine((l) => l.includes(requestId));
    expect(JSON.parse(line)).toMatchObject({ requestId, tenantId: orgA, url: '/graphql', status: 200 });
    expect(cp.proc.lines.join('\n')).not.toContain(a.token!); // secrets never reach a log line
  });
});

describe('untrusted agent messages', () => {
  async function rejectedCount(): Promise<number> {
    const text = await (await fetch(`${cp.url}/metrics`)).text();
    return text
      .split('\n')
      .filter((l) => l.startsWith('hearth_agent_messages_rejected_total'))
      .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
  }

  it('rejects malformed, oversized and unknown messages, counts them, and keeps serving', async () => {
    const before = await rejectedCount();
    const address = { tenantId: orgA, agentId: agent.id };
    const js = jetstream(nc);
    await js.publish(subjects.events(address), new TextEncoder().encode('{not json'));
    await js.publish(
      subjects.events(address),
      new TextEncoder().encode(JSON.stringify({ type: 'job.exfiltrate', v: 1, rows: ['a,b'] })),
    );
    nc.publish(subjects.heartbeat(address), new Uint8Array(100 * 1024));
    nc.publish(
      subjects.heartbeat(address),
      new TextEncoder().encode(JSON.stringify({ type: 'agent.heartbeat', v: 1 })),
    );
    await nc.flush();
    await waitFor(async () => (await rejectedCount()) >= before + 4, {
      what: 'the rejections to be counted',
    });
    const ready = await fetch(`${cp.url}/readyz`);
    expect(ready.status).toBe(200);
    const after = await submit(a, ['true']);
    expect((await until(a, after.id, ['SUCCEEDED', 'FAILED'])).state).toBe('SUCCEEDED');
  });
});

describe('revocation', () => {
  it('revokes an agent: REVOKED, and no new work reaches it', async () => {
    const r = await a.ok<{ revokeAgent: { id: string; state: string } }>(
      `mutation($id: ID!) { revokeAgent(id: $id) { id state } }`,
      { id: agent.id },
    );
    expect(r.revokeAgent).toEqual({ id: agent.id, state: 'REVOKED' });
    const next = await submit(a, ['true'], `agentSelector: { agentIds: ["${agent.id}"] }`);
    expect(next.state).toBe('QUEUED');
    expect(next.stateReason).toBe('waiting: no agent matches the selector');
  });
});
