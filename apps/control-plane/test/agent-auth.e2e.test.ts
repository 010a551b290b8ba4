/**
 * Enrollment against a nats-server with JWT auth on, as in production: the control plane issues each
 * agent credentials for its own subjects only, and revoking an agent makes nats-server refuse them.
 * Also: the embedded demo (`hearth demo --once`), which runs this same path on PGlite.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, jwtAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { agentInboxPrefix, subjects } from '@hearth/contracts';
import {
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  HEARTH_BIN,
  runProcess,
  startAgent,
  startControlPlane,
  waitFor,
  waitForJob,
  type ControlPlane,
  type TestAgent,
  type TestDatabase,
} from '@hearth/testing';
import { generateNatsOperatorSecrets, NatsAuthority } from '../src/platform/messaging/nats-auth.js';
import { startNatsServer, type RunningNatsServer } from '../src/platform/messaging/nats-server.js';

const dir = mkdtempSync(join(tmpdir(), 'hearth-auth-'));
let nats: RunningNatsServer;
let db: TestDatabase;
let cp: ControlPlane;
const orgs: { api: GraphQLClient; id: string; agent: TestAgent }[] = [];

/** Connects with an agent's own credentials, as found in its data dir. */
async function connectAs(agent: TestAgent): Promise<NatsConnection> {
  const creds = JSON.parse(readFileSync(join(agent.dataDir, 'agent.json'), 'utf8')) as { natsJwt: string };
  const seed = readFileSync(join(agent.dataDir, 'agent.seed'), 'utf8').trim();
  return connect({
    servers: nats.url,
    authenticator: jwtAuthenticator(creds.natsJwt, new TextEncoder().encode(seed)),
    inboxPrefix: agentInboxPrefix(agent.id),
    reconnect: false,
    timeout: 5000,
  });
}

beforeAll(async () => {
  const secrets = generateNatsOperatorSecrets();
  nats = await startNatsServer({
    port: 0,
    host: '127.0.0.1',
    dir: join(dir, 'nats'),
    auth: new NatsAuthority(secrets),
  });
  db = await createTestDatabase();
  cp = await startControlPlane({
    DATABASE_URL: db.appUrl,
    NATS_URL: nats.url,
    NATS_OPERATOR_SEED: secrets.operatorSeed,
    NATS_ACCOUNT_SEED: secrets.accountSeed,
    NATS_SYSTEM_ACCOUNT_SEED: secrets.systemAccountSeed,
  });
  for (const name of ['Auth One', 'Auth Two']) {
    const org = await createOrganization(db.appUrl, name);
    const api = new GraphQLClient(cp.graphqlUrl, org.adminToken);
    const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
      `mutation { createJoinToken { token } }`,
    );
    orgs.push({ api, id: org.organizationId, agent: await startAgent(cp.url, createJoinToken.token) });
  }
});

afterAll(async () => {
  for (const o of orgs) await o.agent.proc.stop();
  await cp?.stop();
  await nats?.stop();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

async function runJob(api: GraphQLClient): Promise<string> {
  const { submitJob } = await api.ok<{ submitJob: { id: string } }>(
    `mutation { submitJob(input: { kind: COMMAND, command: ["true"] }) { id } }`,
  );
  return (await waitForJob(api, submitJob.id, ['SUCCEEDED', 'FAILED'])).state;
}

describe('agents on a nats-server with JWT auth', () => {
  it('run jobs with the credentials the control plane issued them', async () => {
    for (const o of orgs) expect(await runJob(o.api)).toBe('SUCCEEDED');
  });

  it("refuse an agent's credentials access to another tenant's agent", async () => {
    const [one, two] = orgs;
    const nc = await connectAs(one.agent);
    try {
      const errors: string[] = [];
      void (async () => {
        for await (const s of nc.status()) if (s.type === 'error') errors.push(String(s.error));
      })();
      const sub = nc.subscribe(subjects.jobs({ tenantId: two.id, agentId: two.agent.id }));
      const closed = await sub.closed;
      expect(String(closed)).toMatch(/Permissions Violation/i);
      nc.publish(subjects.events({ tenantId: two.id, agentId: two.agent.id }), new Uint8Array([123, 125]));
      await nc.flush();
      await waitFor(() => errors.some((e) => /Permissions Violation for Publish/i.test(e)), {
        what: 'the publish to be refused',
      });
    } finally {
      await nc.close();
    }
  });

  it('revokes an agent: nats-server refuses its credentials at once; the other tenant carries on', async () => {
    const [one, two] = orgs;
    const r = await one.api.ok<{ revokeAgent: { state: string } }>(
      `mutation($id: ID!) { revokeAgent(id: $id) { state } }`,
      { id: one.agent.id },
    );
    expect(r.revokeAgent.state).toBe('REVOKED');
    await expect(connectAs(one.agent)).rejects.toThrow(/Authorization Violation/i);
    await one.agent.proc.waitForLine((l) => /revoked|authorization/i.test(l), 15_000);
    expect(await runJob(two.api)).toBe('SUCCEEDED');
  });
});

describe('hearth demo --once', () => {
  it('runs the whole product on PGlite and an embedded nats-server, and the sample job succeeds', async () => {
    const home = join(dir, 'demo-home');
    const r = await runProcess(process.execPath, [HEARTH_BIN, 'demo', '--once'], {
      HEARTH_HOME: home,
      PORT: '0',
      DATABASE_URL: undefined,
      NATS_URL: undefined,
      LOG_LEVEL: 'warn',
    });
    expect(r.stdout).toMatch(/sample job \S+: SUCCEEDED \(exit 0\) hello from a Hearth agent/);
    expect(r.code).toBe(0);
    expect(existsSync(join(home, 'demo.json'))).toBe(true);
    const demo = JSON.parse(readFileSync(join(home, 'demo.json'), 'utf8')) as Record<string, string>;
    expect(Object.keys(demo).sort()).toEqual(['adminToken', 'graphqlUrl', 'organizationId']);
    expect(demo.adminToken).toMatch(/^hrt_/);
  }, 120_000);
});
