/**
 * The agent under the credentials production gives it: a user JWT carrying exactly
 * agentPermissions(), on a private nats-server in operator mode. Everything the agent does (its
 * inbox, consumer lookups, pulls, acks, claims, events, heartbeats) must fit inside them.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, jwtAuthenticator } from '@nats-io/transport-node';
import { JobClaim, agentPermissions, encode, subjects } from '@hearth/contracts';
import { startAgent, type AgentProcess } from './agent-process.js';
import { FakeControlPlane, waitUntil } from './fake-control-plane.js';
import { OperatorNatsServer, natsServerAvailable } from './operator-nats-server.js';

jest.setTimeout(60_000);

let server: OperatorNatsServer;
let cp: FakeControlPlane;
let tmp: string;
let agent: AgentProcess;
let agentCreds: { jwt: string; seed: Uint8Array };

const maybe = natsServerAvailable ? describe : describe.skip;

maybe('hearth-agent run with its production NATS permissions', () => {
  beforeAll(async () => {
    server = await OperatorNatsServer.start();
    const cpCreds = await server.issueUser('control-plane');
    cp = await FakeControlPlane.start({
      servers: server.url,
      authenticator: jwtAuthenticator(cpCreds.jwt, cpCreds.seed),
    });
    agentCreds = await server.issueUser('agent', agentPermissions(cp.address));
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-agent-perm-'));
    const dataDir = path.join(tmp, 'data');
    cp.writeDataDir(dataDir, { servers: [server.url], natsJwt: agentCreds.jwt, seed: agentCreds.seed });
    agent = await startAgent(dataDir, tmp);
  });

  afterAll(async () => {
    agent?.stop();
    await cp?.close();
    await server?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('the permissions are enforced: a client with the default inbox cannot even get a reply', async () => {
    const nc = await connect({
      servers: server.url,
      authenticator: jwtAuthenticator(agentCreds.jwt, agentCreds.seed),
    });
    const { attemptId, jobId } = { attemptId: cp.address.agentId, jobId: cp.address.tenantId };
    const claim = encode(JobClaim, { type: 'job.claim', v: 1, jobId, attemptId, fencingToken: 1 });
    await expect(nc.request(subjects.claim(cp.address), claim, { timeout: 2000 })).rejects.toThrow(
      /permission/i,
    );
    await nc.close();
  });

  it('heartbeats, runs, cancels and reports jobs without a permission violation', async () => {
    await waitUntil(() => cp.heartbeats.length > 0, 10_000, 'a heartbeat');
    const job = await cp.dispatch(['node', '-e', 'console.log("under production permissions")']);
    expect(await cp.waitFinished(job.attemptId)).toMatchObject({ outcome: 'SUCCEEDED', exitCode: 0 });
    expect(cp.logText(job.attemptId)).toContain('under production permissions');

    const long = await cp.dispatch(['node', '-e', 'console.log("ready"); setInterval(() => {}, 1000)']);
    await waitUntil(() => cp.logText(long.attemptId).includes('ready'), 10_000, 'the long job to start');
    await cp.cancel(long);
    expect(await cp.waitFinished(long.attemptId)).toMatchObject({ outcome: 'CANCELLED' });

    await waitUntil(
      async () => (await cp.jobConsumerInfo()).num_ack_pending === 0,
      5000,
      'the dispatch acks',
    );
    agent.proc.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    const violations = server
      .log()
      .split('\n')
      .filter((line) => /Permissions Violation/i.test(line));
    expect(violations.filter((line) => line.includes(`hearth-agent-${cp.address.agentId}`))).toEqual([]);
    expect(agent.log()).not.toMatch(/permission/i);
  });
});
