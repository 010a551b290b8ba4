/**
 * The NATS link over TLS, as customer IT meets it: the control plane and a real agent on a
 * nats-server with TLS and JWT auth (a certificate from the customer's own CA); an agent that does
 * not trust that CA, or that is sent to a server beyond its machine offering no TLS, refuses to
 * connect and says why (`--allow-plaintext` lets the latter through); a control plane told tls://
 * refuses a server without TLS; a join over plain HTTP to another machine is refused before any
 * request. The shared nats-server (SHARED_NATS_URL) offers no TLS; the others are this file's own.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AGENT_BIN,
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  HEARTH_BIN,
  issueCertificate,
  joinAgent,
  makeCertificateAuthority,
  runAgent,
  runProcess,
  startControlPlane,
  waitForJob,
  type ControlPlane,
  type PemPair,
  type Proc,
  type TestDatabase,
  SHARED_NATS_URL,
} from '@hearth/testing';
import { generateNatsOperatorSecrets, NatsAuthority } from '../src/platform/messaging/nats-auth.js';
import { startNatsServer, type RunningNatsServer } from '../src/platform/messaging/nats-server.js';

const dir = mkdtempSync(join(tmpdir(), 'hearth-nats-tls-'));
let ca: PemPair;
const servers: RunningNatsServer[] = [];
const dbs: TestDatabase[] = [];
const cps: ControlPlane[] = [];
const agents: Proc[] = [];

beforeAll(() => {
  ca = makeCertificateAuthority(join(dir, 'pki'), 'customer-ca');
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const cp of cps) await cp.stop();
  for (const s of servers) await s.stop();
  for (const db of dbs) await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

/** A control plane on `natsEnv`'s server, an organization, and a joined (not running) agent. */
async function stack(natsEnv: Record<string, string>) {
  const db = await createTestDatabase();
  dbs.push(db);
  const cp = await startControlPlane({ DATABASE_URL: db.appUrl, ...natsEnv });
  cps.push(cp);
  const org = await createOrganization(db.appUrl, 'TLS Org');
  const api = new GraphQLClient(cp.graphqlUrl, org.adminToken);
  const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
    `mutation { createJoinToken { token } }`,
  );
  const joined = await joinAgent(cp.url, createJoinToken.token);
  if (joined.code !== 0) throw new Error(`join failed: ${joined.stderr}`);
  return { cp, api, dataDir: joined.dataDir };
}

function start(dataDir: string, args: string[] = [], env: Record<string, string> = {}): Proc {
  const proc = runAgent(dataDir, args, env);
  agents.push(proc);
  return proc;
}

/** The agent's first log line with `msg`, parsed. */
async function logLine(proc: Proc, msg: string): Promise<Record<string, unknown>> {
  return JSON.parse(await proc.waitForLine((l) => l.includes(`"msg":"${msg}"`), 30_000)) as Record<
    string,
    unknown
  >;
}

async function runsAJob(api: GraphQLClient): Promise<string> {
  const { submitJob } = await api.ok<{ submitJob: { id: string } }>(
    `mutation { submitJob(input: { kind: COMMAND, command: ["true"] }) { id } }`,
  );
  return (await waitForJob(api, submitJob.id, ['SUCCEEDED', 'FAILED'], 'state', 60_000)).state;
}

describe('NATS over TLS with JWT auth (production shape)', () => {
  it("runs a job with the customer's CA trusted; without it the agent refuses the server and says how to trust it", async () => {
    const secrets = generateNatsOperatorSecrets();
    const cert = issueCertificate(ca, join(dir, 'pki'), 'nats');
    const nats = await startNatsServer({
      dir: join(dir, 'nats-tls'),
      auth: new NatsAuthority(secrets),
      tls: { certFile: cert.cert, keyFile: cert.key },
    });
    servers.push(nats);
    expect(nats.url).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    const { cp, api, dataDir } = await stack({
      NATS_URL: nats.url,
      NATS_OPERATOR_SEED: secrets.operatorSeed,
      NATS_ACCOUNT_SEED: secrets.accountSeed,
      NATS_SYSTEM_ACCOUNT_SEED: secrets.systemAccountSeed,
      NODE_EXTRA_CA_CERTS: ca.cert,
    });

    // Not trusting the CA: no connection, and the log says what to do.
    const untrusting = start(dataDir);
    const refused = await logLine(untrusting, 'cannot connect to NATS; retrying');
    expect(refused).toMatchObject({
      tlsRequired: true,
      hint: expect.stringContaining('NODE_EXTRA_CA_CERTS'),
    });
    expect(String(refused.err)).toMatch(/certificate/i);
    await untrusting.stop();

    const agent = start(dataDir, [], { NODE_EXTRA_CA_CERTS: ca.cert });
    expect(await logLine(agent, 'connected to NATS')).toMatchObject({ tls: true });
    expect(await runsAJob(api)).toBe('SUCCEEDED');
    await agent.stop();
    await cp.stop();
  }, 120_000);

  it('a control plane told tls:// refuses a NATS server without TLS, and says so', async () => {
    const db = await createTestDatabase();
    dbs.push(db);
    const r = await runProcess(process.execPath, [HEARTH_BIN, 'serve'], {
      DATABASE_URL: db.appUrl,
      NATS_URL: SHARED_NATS_URL.replace(/^nats:/, 'tls:'),
      PORT: '0',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `hearth: NATS_URL names a tls:// server, and the NATS server reached (${SHARED_NATS_URL.replace(/^nats:/, 'tls:')}) offers no TLS`,
    );
  }, 60_000);
});

describe('an agent speaking to a NATS server on another machine', () => {
  // This machine's own address on its network: traffic to it is not loopback for the agent's rules.
  const address = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

  it('refuses one that offers no TLS, saying how to fix it; runs jobs with --allow-plaintext, warned', async () => {
    if (!address) throw new Error('this test needs a network interface other than loopback');
    const nats = await startNatsServer({ dir: join(dir, 'nats-plain'), host: '0.0.0.0' });
    servers.push(nats);
    const { cp, api, dataDir } = await stack({
      NATS_URL: nats.url,
      AGENT_NATS_URL: `nats://${address}:${nats.port}`,
    });
    await cp.proc.waitForLine((l) => l.includes('the NATS server offers no TLS, and agents reach'));

    const strict = start(dataDir);
    const refused = await logLine(strict, 'cannot connect to NATS; retrying');
    expect(refused).toMatchObject({
      err: "server does not support 'tls'",
      servers: [`nats://${address}:${nats.port}`],
      tlsRequired: true,
      hint: expect.stringContaining('--allow-plaintext'),
    });
    const { agents: before } = await api.ok<{ agents: { state: string }[] }>(`{ agents { state } }`);
    expect(before.map((a) => a.state)).not.toContain('ONLINE');
    await strict.stop();

    const lax = start(dataDir, ['--allow-plaintext']);
    expect(
      await logLine(
        lax,
        '--allow-plaintext: the NATS connection to another machine may be unencrypted (jobs, their log tails and results)',
      ),
    ).toMatchObject({
      servers: [`nats://${address}:${nats.port}`],
    });
    expect(await logLine(lax, 'connected to NATS')).toMatchObject({ tls: false });
    expect(await runsAJob(api)).toBe('SUCCEEDED');
  }, 120_000);

  it('refuses to join over plain HTTP to another machine, before sending anything', async () => {
    const dataDir = join(dir, 'join-http');
    const r = await runProcess(process.execPath, [
      AGENT_BIN,
      'join',
      '--url',
      'http://hearth.corp.example:8080',
      '--token',
      'hj_never-sent',
      '--data-dir',
      dataDir,
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'hearth-agent: --url http://hearth.corp.example:8080 is plain HTTP to another machine: the join token',
    );
    expect(existsSync(join(dataDir, 'agent.json'))).toBe(false);
  }, 30_000);
});
