/**
 * Durability with real processes: an agent killed with SIGKILL mid-job (the job finishes once, on
 * another agent, and the dead attempt's late result is fenced off), an agent stopped with a job
 * past its drain timeout (the job is given back and runs elsewhere at once), and a control plane killed
 * between commit and relay (the job still runs, exactly once, after restart).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { encode, JobFinished, subjects } from '@hearth/contracts';
import {
  createOrganization,
  createTestDatabase,
  getJob,
  GraphQLClient,
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
const FIELDS = 'id state exitCode attempts agent { id }';
interface Job {
  id: string;
  state: string;
  exitCode: number | null;
  attempts: number;
  agent: { id: string } | null;
}

/** A job that records each start and each completion in a file, so tests can count real runs. */
function recordingCommand(file: string, ms: number): string[] {
  const src = `const fs = require('fs'); const a = process.env.HEARTH_ATTEMPT_ID;
fs.appendFileSync(${JSON.stringify(file)}, 'start ' + a + '\\n');
setTimeout(() => fs.appendFileSync(${JSON.stringify(file)}, 'done ' + a + '\\n'), ${ms});`;
  return ['node', '-e', src];
}

function lines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : [];
}

const until = (client: GraphQLClient, id: string, states: string[], timeoutMs?: number) =>
  waitForJob<Job>(client, id, states, FIELDS, timeoutMs);

/** A control plane on a fresh database with two real agents (run with `args`), both online. */
async function twoAgents(orgName: string, args: string[]) {
  const db = await createTestDatabase();
  const cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL });
  const org = await createOrganization(db.appUrl, orgName);
  const api = new GraphQLClient(cp.graphqlUrl, org.adminToken);
  const agents: TestAgent[] = [];
  for (let i = 0; i < 2; i++) {
    const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
      `mutation { createJoinToken { token } }`,
    );
    agents.push(await startAgent(cp.url, createJoinToken.token, { args }));
  }
  await waitFor(
    async () =>
      (await api.ok<{ agents: { state: string }[] }>(`{ agents { state } }`)).agents.every(
        (x) => x.state === 'ONLINE',
      ),
    { what: 'both agents online' },
  );
  return { db, cp, api, orgId: org.organizationId, agents };
}

const tmp = mkdtempSync(join(tmpdir(), 'hearth-durability-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('an agent killed mid-job', () => {
  let db: TestDatabase;
  let cp: ControlPlane;
  let api: GraphQLClient;
  let orgId: string;
  let agents: TestAgent[] = [];

  beforeAll(async () => {
    ({ db, cp, api, orgId, agents } = await twoAgents('Durable', ['--max-jobs', '1']));
  });

  afterAll(async () => {
    for (const x of agents) await x.proc.stop();
    await cp?.stop();
    await db?.drop();
  });

  it('re-dispatches within 15 s, finishes once on the other agent, and rejects the stale result', async () => {
    const file = join(tmp, 'agent-kill.log');
    const { submitJob } = await api.ok<{ submitJob: Job }>(
      `mutation($c: [String!]!) { submitJob(input: { kind: COMMAND, command: $c, maxAttempts: 3 }) { ${FIELDS} } }`,
      { c: recordingCommand(file, 3000) },
    );
    const running = await until(api, submitJob.id, ['RUNNING']);
    await waitFor(() => lines(file).length === 1, { what: 'the first attempt to start' });
    const victim = agents.find((x) => x.id === running.agent!.id)!;
    const survivor = agents.find((x) => x !== victim)!;

    // The machine dies: the agent and the job it ran, at once.
    victim.proc.kill9();
    execFileSync('pkill', ['-9', '-f', file]);
    const killedAt = Date.now();

    const done = await until(api, submitJob.id, ['SUCCEEDED', 'FAILED'], 40_000);
    expect(done).toMatchObject({ state: 'SUCCEEDED', exitCode: 0, attempts: 2, agent: { id: survivor.id } });
    const [second] = await query<{ created_at: Date }>(
      db.adminUrl,
      `SELECT created_at FROM job_attempts WHERE job_id = $1 AND number = 2`,
      [submitJob.id],
    );
    expect(second.created_at.getTime() - killedAt).toBeLessThan(15_000);
    const attempts = await query<{ number: number; state: string; agent_id: string }>(
      db.adminUrl,
      `SELECT number, state, agent_id FROM job_attempts WHERE job_id = $1 ORDER BY number`,
      [submitJob.id],
    );
    expect(attempts).toEqual([
      { number: 1, state: 'LOST', agent_id: victim.id },
      { number: 2, state: 'SUCCEEDED', agent_id: survivor.id },
    ]);
    const runs = lines(file);
    expect(runs.filter((l) => l.startsWith('start'))).toHaveLength(2);
    expect(runs.filter((l) => l.startsWith('done'))).toHaveLength(1); // finished once

    // The dead agent comes back and reports its old attempt as failed: fenced off.
    const [first] = await query<{ id: string }>(
      db.adminUrl,
      `SELECT id FROM job_attempts WHERE job_id = $1 AND number = 1`,
      [submitJob.id],
    );
    const nc = await connect({ servers: NATS_URL });
    try {
      const late = encode(JobFinished, {
        type: 'job.finished',
        v: 1,
        jobId: submitJob.id,
        attemptId: first.id,
        fencingToken: 1,
        outcome: 'FAILED',
        exitCode: 137,
        signal: null,
        reason: 'late result from a stale attempt',
        finishedAt: new Date().toISOString(),
      });
      await jetstream(nc).publish(subjects.events({ tenantId: orgId, agentId: victim.id }), late);
    } finally {
      await nc.close();
    }
    await waitFor(
      async () =>
        (await (await fetch(`${cp.url}/metrics`)).text()).includes(
          'hearth_stale_results_rejected_total{type="job.finished"} 1',
        ),
      {
        what: 'the stale result to be rejected',
      },
    );
    expect(await getJob<Job>(api, submitJob.id, FIELDS)).toMatchObject({
      state: 'SUCCEEDED',
      exitCode: 0,
      attempts: 2,
    });

    const { agents: list } = await api.ok<{ agents: { id: string; state: string }[] }>(
      `{ agents { id state } }`,
    );
    expect(list.find((x) => x.id === victim.id)?.state).toBe('OFFLINE');
  });
});

describe('an agent stopped for maintenance (SIGTERM) with a job past its drain timeout', () => {
  let db: TestDatabase;
  let cp: ControlPlane;
  let api: GraphQLClient;
  let agents: TestAgent[] = [];

  beforeAll(async () => {
    ({ db, cp, api, agents } = await twoAgents('Maintained', ['--max-jobs', '1', '--drain-seconds', '1']));
  });

  afterAll(async () => {
    for (const x of agents) await x.proc.stop();
    await cp?.stop();
    await db?.drop();
  });

  it('gets the job back at once and runs it elsewhere, without using up its one attempt', async () => {
    const file = join(tmp, 'agent-stop.log');
    const { submitJob } = await api.ok<{ submitJob: Job }>(
      `mutation($c: [String!]!) { submitJob(input: { kind: COMMAND, command: $c, maxAttempts: 1 }) { ${FIELDS} } }`,
      { c: recordingCommand(file, 4000) },
    );
    const running = await until(api, submitJob.id, ['RUNNING']);
    await waitFor(() => lines(file).length === 1, { what: 'the first attempt to start' });
    const stopped = agents.find((x) => x.id === running.agent!.id)!;
    const other = agents.find((x) => x !== stopped)!;

    expect(await stopped.proc.stop()).toBe(0); // drains 1 s, kills the job, gives it back, exits
    const exitedAt = Date.now();
    const done = await until(api, submitJob.id, ['SUCCEEDED', 'FAILED'], 30_000);
    expect(done).toMatchObject({ state: 'SUCCEEDED', exitCode: 0, attempts: 2, agent: { id: other.id } });
    const attempts = await query<{
      number: number;
      state: string;
      reason: string | null;
      agent_id: string;
      created_at: Date;
    }>(
      db.adminUrl,
      `SELECT number, state, reason, agent_id, created_at FROM job_attempts WHERE job_id = $1 ORDER BY number`,
      [submitJob.id],
    );
    expect(attempts.map(({ created_at: _, ...a }) => a)).toEqual([
      { number: 1, state: 'RELEASED', reason: 'agent stopped: drain timeout of 1s', agent_id: stopped.id },
      { number: 2, state: 'SUCCEEDED', reason: null, agent_id: other.id },
    ]);
    // Given back, not lost: no waiting for the stopped agent's lease (8 s) to run out.
    expect(attempts[1].created_at.getTime() - exitedAt).toBeLessThan(5000);
    const runs = lines(file);
    expect(runs.filter((l) => l.startsWith('start'))).toHaveLength(2);
    expect(runs.filter((l) => l.startsWith('done'))).toHaveLength(1);

    // The stopped agent said it was stopping: it takes nothing until it runs again.
    const { agents: list } = await api.ok<{ agents: { id: string; capacity: number }[] }>(
      `{ agents { id capacity } }`,
    );
    expect(list.find((x) => x.id === stopped.id)?.capacity).toBe(0);
  });
});

describe('a control plane killed between commit and relay', () => {
  let db: TestDatabase;
  let cp: ControlPlane | null = null;
  let token: string;
  let agent: TestAgent;

  beforeAll(async () => {
    db = await createTestDatabase();
    const org = await createOrganization(db.appUrl, 'Crashy');
    token = org.adminToken;
    cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL });
    const api = new GraphQLClient(cp.graphqlUrl, token);
    const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
      `mutation { createJoinToken { token } }`,
    );
    agent = await startAgent(cp.url, createJoinToken.token);
    await waitFor(
      async () =>
        (await api.ok<{ agents: { state: string }[] }>(`{ agents { state } }`)).agents[0]?.state === 'ONLINE',
      {
        what: 'the agent online',
      },
    );
    await cp.stop();
    cp = null;
  });

  afterEach(async () => {
    await cp?.stop();
    cp = null;
  });

  afterAll(async () => {
    await agent?.proc.stop();
    await db?.drop();
  });

  it('dispatches a committed job after restart, exactly once', async () => {
    const file = join(tmp, 'relay-off.log');
    // A process that commits but never relays, then dies hard.
    const doomed = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL, OUTBOX_RELAY: 'false' });
    const api = new GraphQLClient(doomed.graphqlUrl, token);
    const { submitJob } = await api.ok<{ submitJob: Job }>(
      `mutation($c: [String!]!) { submitJob(input: { kind: COMMAND, command: $c }) { ${FIELDS} } }`,
      {
        c: recordingCommand(file, 10),
      },
    );
    expect(submitJob.state).toBe('DISPATCHED');
    const [pending] = await query<{ published_at: Date | null }>(
      db.adminUrl,
      `SELECT published_at FROM outbox WHERE msg_id IN (SELECT current_attempt_id::text FROM jobs WHERE id = $1)`,
      [submitJob.id],
    );
    expect(pending.published_at).toBeNull();
    doomed.proc.kill9();
    await doomed.proc.exited;
    await new Promise((r) => setTimeout(r, 500));
    expect(lines(file)).toEqual([]); // nothing ran while the message sat in the outbox

    cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL });
    const done = await until(new GraphQLClient(cp.graphqlUrl, token), submitJob.id, ['SUCCEEDED', 'FAILED']);
    expect(done).toMatchObject({ state: 'SUCCEEDED', attempts: 1 });
    await new Promise((r) => setTimeout(r, 1000));
    expect(lines(file).filter((l) => l.startsWith('start'))).toHaveLength(1);
  });

  it('does not run a job twice when the relay died after publishing but before marking the row', async () => {
    const file = join(tmp, 'relay-fault.log');
    const faulty = await startControlPlane({
      DATABASE_URL: db.appUrl,
      NATS_URL,
      HEARTH_FAULT: 'relay-after-publish',
    });
    const api = new GraphQLClient(faulty.graphqlUrl, token);
    // The process may die before it answers: the commit happened, which is what matters.
    await api
      .request(`mutation($c: [String!]!) { submitJob(input: { kind: COMMAND, command: $c }) { id } }`, {
        c: recordingCommand(file, 10),
      })
      .catch(() => null);
    expect(await faulty.proc.exited).toBe(70); // it published, then died before marking the outbox row
    const [submitJob] = await query<{ id: string }>(
      db.adminUrl,
      `SELECT id FROM jobs WHERE command::text LIKE $1`,
      [`%relay-fault.log%`],
    );
    const [row] = await query<{ published_at: Date | null }>(
      db.adminUrl,
      `SELECT published_at FROM outbox WHERE msg_id IN (SELECT current_attempt_id::text FROM jobs WHERE id = $1)`,
      [submitJob.id],
    );
    expect(row.published_at).toBeNull();

    cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL });
    const done = await until(new GraphQLClient(cp.graphqlUrl, token), submitJob.id, ['SUCCEEDED', 'FAILED']);
    expect(done).toMatchObject({ state: 'SUCCEEDED', attempts: 1 });
    await waitFor(
      async () =>
        (
          await query<{ published_at: Date | null }>(
            db.adminUrl,
            `SELECT published_at FROM outbox WHERE published_at IS NULL`,
          )
        ).length === 0,
      {
        what: 'the outbox to drain',
      },
    );
    await new Promise((r) => setTimeout(r, 1000));
    expect(lines(file).filter((l) => l.startsWith('start'))).toHaveLength(1); // JetStream dropped the duplicate
  });
});
