/**
 * NATS goes away and comes back (a restart, a network cut): the agent and the control plane
 * reconnect on their own, with backoff, and work carries on. The test runs its own nats-server so
 * it can stop it; JetStream state survives the restart on disk, as in production.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  startAgent,
  startControlPlane,
  waitFor,
  waitForJob,
  type ControlPlane,
  type TestAgent,
  type TestDatabase,
} from '@hearth/testing';
import { startNatsServer, type RunningNatsServer } from '../src/platform/messaging/nats-server.js';

const dir = mkdtempSync(join(tmpdir(), 'hearth-nats-restart-'));
let nats: RunningNatsServer;
let db: TestDatabase;
let cp: ControlPlane;
let agent: TestAgent;
let api: GraphQLClient;

beforeAll(async () => {
  nats = await startNatsServer({ port: 0, host: '127.0.0.1', dir });
  db = await createTestDatabase();
  cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL: nats.url });
  const org = await createOrganization(db.appUrl, 'Flaky Network');
  api = new GraphQLClient(cp.graphqlUrl, org.adminToken);
  const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
    `mutation { createJoinToken { token } }`,
  );
  agent = await startAgent(cp.url, createJoinToken.token);
});

afterAll(async () => {
  await agent?.proc.stop();
  await cp?.stop();
  await nats?.stop();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

async function agentState(): Promise<string> {
  return (await api.ok<{ agents: { state: string }[] }>(`{ agents { state } }`)).agents[0]?.state;
}

describe('a NATS restart', () => {
  it('is survived by agent and control plane: the agent comes back ONLINE and a job submitted during the outage runs', async () => {
    await waitFor(async () => (await agentState()) === 'ONLINE', { what: 'the agent online' });

    await nats.stop();
    // While NATS is down the API still answers, and a submitted job is kept (QUEUED or DISPATCHED).
    const { submitJob } = await api.ok<{ submitJob: { id: string; state: string } }>(
      `mutation { submitJob(input: { kind: COMMAND, command: ["node", "-e", "console.log('after the outage')"] }) { id state } }`,
    );
    expect(['QUEUED', 'DISPATCHED']).toContain(submitJob.state);
    const ready = await fetch(`${cp.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ postgres: true, nats: false });

    await new Promise((r) => setTimeout(r, 2000));
    nats = await startNatsServer({ port: nats.port, host: '127.0.0.1', dir });

    await waitFor(async () => (await fetch(`${cp.url}/readyz`)).status === 200, {
      what: 'the control plane to reconnect',
      timeoutMs: 30_000,
    });
    await waitFor(async () => (await agentState()) === 'ONLINE', {
      what: 'the agent to reconnect',
      timeoutMs: 30_000,
    });
    const done = await waitForJob<{ state: string; logTail: string }>(
      api,
      submitJob.id,
      ['SUCCEEDED', 'FAILED'],
      'state logTail',
    );
    expect(done.state).toBe('SUCCEEDED');
    expect(done.logTail).toContain('after the outage');
  });
});
