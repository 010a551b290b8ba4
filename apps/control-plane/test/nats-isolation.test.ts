/**
 * NATS isolation, enforced by a real nats-server in operator (JWT) mode: an agent can reach only
 * its own subjects, consumers and inbox, whatever its code does; revoking it cuts it off at once.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  connect,
  jwtAuthenticator,
  PermissionViolationError,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import {
  AckPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { encodeAccount, encodeUser } from '@nats-io/jwt';
import { createAccount, createUser, fromSeed, type KeyPair } from '@nats-io/nkeys';
import {
  agentInboxPrefix,
  consumers,
  DOWN_STREAM,
  subjects,
  TELEMETRY_STREAM,
  UP_STREAM,
  type AgentAddress,
} from '@hearth/contracts';
import {
  CLAIMS_UPDATE_SUBJECT,
  generateNatsOperatorSecrets,
  NatsAuthority,
  type NatsOperatorSecrets,
} from '../src/platform/messaging/nats-auth.js';
import { startNatsServer, type RunningNatsServer } from '../src/platform/messaging/nats-server.js';

interface Agent extends AgentAddress {
  key: KeyPair;
  jwt: string;
}

/** A connection plus every error status the server sent it (permissions violations included). */
interface Watched {
  nc: NatsConnection;
  errors: Error[];
}

const T1 = randomUUID();
const T2 = randomUUID();
const SETTLE_MS = 300;

let dir: string;
let server: RunningNatsServer;
let secrets: NatsOperatorSecrets;
let authority: NatsAuthority;
let service: NatsConnection;
let jsm: JetStreamManager;
const opened: NatsConnection[] = [];
let A: Agent;
let B: Agent;
let C: Agent;
const revoked = new Map<string, number>();

async function open(opts: NodeConnectionOptions): Promise<Watched> {
  const nc = await connect({ servers: server.url, timeout: 3000, ...opts });
  opened.push(nc);
  const errors: Error[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'error') errors.push(s.error);
  })();
  return { nc, errors };
}

async function newAgent(tenantId: string): Promise<Agent> {
  const address = { tenantId, agentId: randomUUID() };
  const key = createUser(); // the agent's own key pair: only the public key leaves the agent
  const jwt = await authority.issueAgentJwt({ ...address, publicKey: key.getPublicKey() });
  return { ...address, key, jwt };
}

function connectAgent(a: Agent, opts: Partial<NodeConnectionOptions> = {}): Promise<Watched> {
  return open({
    name: `agent-${a.agentId}`,
    authenticator: jwtAuthenticator(a.jwt, a.key.getSeed()),
    inboxPrefix: agentInboxPrefix(a.agentId),
    ...opts,
  });
}

async function createAgentConsumers(a: Agent): Promise<void> {
  await jsm.consumers.add(DOWN_STREAM, {
    durable_name: consumers.jobs(a.agentId),
    filter_subject: subjects.jobs(a),
    ack_policy: AckPolicy.Explicit,
  });
  await jsm.consumers.add(DOWN_STREAM, {
    durable_name: consumers.control(a.agentId),
    filter_subject: subjects.control(a),
    ack_policy: AckPolicy.Explicit,
  });
}

/** What `p` settled with, or `fallback` if it had not settled after `ms`. */
async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The PermissionViolationError `p` failed with (nats.js may wrap it as the cause), else what happened. */
async function refusal(p: Promise<unknown>): Promise<PermissionViolationError | string> {
  try {
    await p;
    return 'allowed';
  } catch (err) {
    for (let e: unknown = err; e instanceof Error; e = e.cause)
      if (e instanceof PermissionViolationError) return e;
    return String(err);
  }
}

/** The error an attempt to connect failed with, or 'connected'. */
async function connectError(opts: NodeConnectionOptions): Promise<string> {
  try {
    const nc = await connect({ servers: server.url, timeout: 3000, reconnect: false, ...opts });
    await nc.close();
    return 'connected';
  } catch (err) {
    return String(err);
  }
}

async function violationFor(w: Watched, subject: string): Promise<PermissionViolationError | undefined> {
  await w.nc.flush(); // the server answers PUB/SUB before this PING
  for (let i = 0; i < 20; i++) {
    const found = w.errors.find((e) => e instanceof PermissionViolationError && e.subject === subject);
    if (found) return found as PermissionViolationError;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

/** Counts what the control plane would receive on `subject` while `act` runs. */
async function received(subject: string, act: () => Promise<void>): Promise<number> {
  const sub = service.subscribe(subject);
  await service.flush();
  await act();
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  await service.flush();
  const count = sub.getReceived();
  sub.unsubscribe();
  return count;
}

async function upStreamMessages(): Promise<number> {
  return (await jsm.streams.info(UP_STREAM)).state.messages;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hearth-nats-'));
  secrets = generateNatsOperatorSecrets();
  authority = new NatsAuthority(secrets);
  server = await startNatsServer({ dir, auth: authority });

  const creds = await authority.serviceCredentials('control-plane');
  service = (await open({ name: 'control-plane', authenticator: jwtAuthenticator(creds.jwt, creds.seed) }))
    .nc;
  jsm = await jetstreamManager(service);
  await jsm.streams.add({
    name: DOWN_STREAM,
    subjects: [subjects.wildcard.down],
    retention: RetentionPolicy.Workqueue,
  });
  await jsm.streams.add({
    name: UP_STREAM,
    subjects: [subjects.wildcard.events],
    retention: RetentionPolicy.Workqueue,
  });
  await jsm.streams.add({
    name: TELEMETRY_STREAM,
    subjects: [subjects.wildcard.telemetry],
    retention: RetentionPolicy.Workqueue,
  });

  [A, B, C] = await Promise.all([newAgent(T1), newAgent(T1), newAgent(T2)]);
  for (const a of [A, B, C]) await createAgentConsumers(a);
});

afterAll(async () => {
  await Promise.allSettled(opened.map((nc) => nc.close()));
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('NATS isolation enforced by nats-server (operator JWT auth)', () => {
  it('lets the control plane dispatch and an agent work its own jobs, events, claims and heartbeats', async () => {
    const js = jetstream(service);
    const dispatched = await js.publish(subjects.jobs(A), JSON.stringify({ job: 'for A' }), {
      msgID: randomUUID(),
    });
    expect(dispatched.stream).toBe(DOWN_STREAM);

    const a = await connectAgent(A);
    const jsA = jetstream(a.nc);
    const jobs = await jsA.consumers.get(DOWN_STREAM, consumers.jobs(A.agentId));
    const msg = await jobs.next({ expires: 2000 });
    expect(msg?.subject).toBe(subjects.jobs(A));
    expect(msg?.json()).toEqual({ job: 'for A' });
    expect(await msg?.ackAck()).toBe(true);
    expect((await jsm.streams.info(DOWN_STREAM)).state.messages).toBe(0); // work queue: acked = gone
    const control = await jsA.consumers.get(DOWN_STREAM, consumers.control(A.agentId));
    expect((await control.info(true)).name).toBe(consumers.control(A.agentId));

    const ack = await jsA.publish(subjects.events(A), JSON.stringify({ event: 'started' }));
    expect(ack.stream).toBe(UP_STREAM);
    const telemetry = await jsA.publish(subjects.telemetry(A), JSON.stringify({ samples: [] }));
    expect(telemetry.stream).toBe(TELEMETRY_STREAM);

    const responder = service.subscribe(subjects.wildcard.claim, {
      callback: (_err, m) => {
        m.respond(JSON.stringify({ granted: subjects.parse(m.subject)?.agentId }));
      },
    });
    await service.flush(); // the server has the subscription before the agent asks
    const reply = await a.nc.request(subjects.claim(A), '{}', { timeout: 2000 });
    expect(reply.json()).toEqual({ granted: A.agentId });
    responder.unsubscribe();

    const heartbeats = await received(subjects.wildcard.heartbeat, async () => {
      a.nc.publish(subjects.heartbeat(A), '{}');
      await a.nc.flush();
    });
    expect(heartbeats).toBe(1);
    expect(a.errors).toEqual([]);
    await a.nc.close();
  });

  it('refuses an agent any subscription outside its own inbox', async () => {
    const a = await connectAgent(A);
    const forbidden = [
      subjects.agentAll(B),
      subjects.jobs(B),
      subjects.events(B),
      subjects.heartbeat(B),
      subjects.agentAll(C),
      subjects.jobs(C),
      'hearth.>',
      '>',
      '_INBOX.>',
      `${agentInboxPrefix(B.agentId)}.>`,
      '$JS.API.>',
    ];
    for (const subject of forbidden) {
      const outcome = await within(a.nc.subscribe(subject).closed, 2000, 'still open');
      expect({ subject, outcome }).toEqual({ subject, outcome: expect.any(PermissionViolationError) });
      expect((outcome as PermissionViolationError).operation).toBe('subscription');
    }
    // The connection survives the refusals and its own inbox still works.
    expect(a.nc.isClosed()).toBe(false);
    const own = a.nc.subscribe(`${agentInboxPrefix(A.agentId)}.probe`, { max: 1 });
    await a.nc.flush();
    service.publish(`${agentInboxPrefix(A.agentId)}.probe`, 'hi');
    for await (const m of own) expect(m.string()).toBe('hi');
    await a.nc.close();
  });

  it('refuses an agent publishing as another agent, into another tenant, or down to itself; nothing arrives', async () => {
    const a = await connectAgent(A);
    const eventsBefore = await upStreamMessages();
    const cases = [
      subjects.events(B),
      subjects.heartbeat(B),
      subjects.claim(B),
      subjects.telemetry(B),
      subjects.events(C),
      subjects.telemetry(C),
      subjects.jobs(A),
    ];
    for (const subject of cases) {
      const arrived = await received(subject, async () => {
        a.nc.publish(subject, JSON.stringify({ spoofed: true }));
        await a.nc.flush();
      });
      expect({ subject, arrived }).toEqual({ subject, arrived: 0 });
      const violation = await violationFor(a, subject);
      expect(violation?.operation).toBe('publish');
    }
    // A JetStream publish as B is refused too (the request fails instead of timing out).
    expect(await refusal(jetstream(a.nc).publish(subjects.events(B), '{}'))).toBeInstanceOf(
      PermissionViolationError,
    );
    expect(await upStreamMessages()).toBe(eventsBefore);
    expect((await jsm.streams.info(DOWN_STREAM)).state.messages).toBe(0);
    await a.nc.close();
  });

  it("refuses an agent another agent's consumer and any JetStream management", async () => {
    const dispatched = await jetstream(service).publish(subjects.jobs(B), JSON.stringify({ job: 'for B' }));
    const a = await connectAgent(A);
    const jsA = jetstream(a.nc);
    const api = `$JS.API.CONSUMER`;
    const attempts: [string, Promise<unknown>][] = [
      [
        `${api}.INFO.${DOWN_STREAM}.${consumers.jobs(B.agentId)}`,
        jsA.consumers.get(DOWN_STREAM, consumers.jobs(B.agentId)),
      ],
      [
        `${api}.INFO.${DOWN_STREAM}.${consumers.jobs(C.agentId)}`,
        jsA.consumers.get(DOWN_STREAM, consumers.jobs(C.agentId)),
      ],
      [
        `${api}.MSG.NEXT.${DOWN_STREAM}.${consumers.jobs(B.agentId)}`,
        a.nc.request(`${api}.MSG.NEXT.${DOWN_STREAM}.${consumers.jobs(B.agentId)}`, '{"batch":1}'),
      ],
      // Nor can it make itself a consumer that reads B's jobs, or manage JetStream at all.
      [
        `${api}.CREATE.${DOWN_STREAM}.sneaky.${subjects.jobs(B)}`,
        a.nc.request(
          `${api}.CREATE.${DOWN_STREAM}.sneaky.${subjects.jobs(B)}`,
          JSON.stringify({
            stream_name: DOWN_STREAM,
            config: { name: 'sneaky', filter_subject: subjects.jobs(B) },
          }),
        ),
      ],
      ['$JS.API.INFO', jetstreamManager(a.nc)],
    ];
    for (const [subject, attempt] of attempts) {
      const outcome = await refusal(attempt);
      expect({ subject, outcome }).toEqual({ subject, outcome: expect.any(PermissionViolationError) });
      expect((outcome as PermissionViolationError).subject).toBe(subject);
    }

    // B's job is still there, and B gets it.
    const b = await connectAgent(B);
    const job = await (
      await jetstream(b.nc).consumers.get(DOWN_STREAM, consumers.jobs(B.agentId))
    ).next({
      expires: 2000,
    });
    expect(job?.seq).toBe(dispatched.seq);
    expect(job?.json()).toEqual({ job: 'for B' });
    job?.ack();
    await b.nc.close();
    await a.nc.close();
  });

  it('refuses a user whose JWT was not signed by our account', async () => {
    const stranger = new NatsAuthority(generateNatsOperatorSecrets());
    const key = createUser();
    const jwt = await stranger.issueAgentJwt({
      tenantId: T1,
      agentId: A.agentId,
      publicKey: key.getPublicKey(),
    });
    expect(await connectError({ authenticator: jwtAuthenticator(jwt, key.getSeed()) })).toMatch(
      /authorization violation/i,
    );
  });

  it('trap: an account JWT without explicit limits admits no connection at all', async () => {
    const sys = await authority.systemUserCredentials();
    const sysNc = (await open({ name: 'claims', authenticator: jwtAuthenticator(sys.jwt, sys.seed) })).nc;
    const operator = fromSeed(new TextEncoder().encode(secrets.operatorSeed));
    const bare = createAccount();
    const accountJwt = await encodeAccount('NO-LIMITS', bare, {}, { signer: operator });
    const pushed = await sysNc.request(CLAIMS_UPDATE_SUBJECT, accountJwt, { timeout: 3000 });
    expect(pushed.json<{ data?: { code: number } }>().data?.code).toBe(200); // the server took it

    const user = createUser();
    const userJwt = await encodeUser('u', user, bare);
    const outcome = await connectError({
      timeout: 2000,
      authenticator: jwtAuthenticator(userJwt, user.getSeed()),
    });
    // The server refuses either at the connection or at the client's first subscription (its inbox),
    // depending on timing: both are the zero limits of an account JWT that names none.
    expect(outcome).toMatch(
      // …or the socket is reset (or a write hits it) as the server closes it, before the client reads the reason.
      /maximum (account active connections|subscriptions|payload|connections) exceeded|ECONNRESET|EPIPE/i,
    );
    await sysNc.close();
  });

  it("revocation closes the agent's live connection and refuses it afterwards; other agents keep working", async () => {
    const a = await connectAgent(A, { reconnectTimeWait: 100 });
    const b = await connectAgent(B);
    const sys = await authority.systemUserCredentials();
    const sysNc = (await open({ name: 'claims', authenticator: jwtAuthenticator(sys.jwt, sys.seed) })).nc;

    const closed = a.nc.closed();
    revoked.set(A.key.getPublicKey(), Math.floor(Date.now() / 1000));
    await authority.revokeUsers(sysNc, revoked);
    expect(await within(closed, 10000, 'still open')).not.toBe('still open');
    expect(a.nc.isClosed()).toBe(true);
    expect(a.errors.map(String)).toContainEqual(expect.stringMatching(/user authentication revoked/i));

    const again = await connectError({
      inboxPrefix: agentInboxPrefix(A.agentId),
      authenticator: jwtAuthenticator(A.jwt, A.key.getSeed()),
    });
    expect(again).toMatch(/authorization violation/i);

    expect(b.nc.isClosed()).toBe(false);
    const ack = await jetstream(b.nc).publish(subjects.events(B), JSON.stringify({ event: 'still here' }));
    expect(ack.stream).toBe(UP_STREAM);
    await b.nc.close();
    await sysNc.close();
  });

  it('a restart keeps revocations only when the rendered config carries them', async () => {
    const asAgent = (x: Agent) => ({
      authenticator: jwtAuthenticator(x.jwt, x.key.getSeed()),
      inboxPrefix: agentInboxPrefix(x.agentId),
    });
    await Promise.allSettled(opened.splice(0).map((nc) => nc.close()));

    // Trap: the preload is signed afresh at each render, so it replaces the stored (revoking) JWT.
    await server.stop();
    server = await startNatsServer({ dir, auth: authority });
    expect(await connectError(asAgent(A))).toBe('connected');

    await server.stop();
    server = await startNatsServer({ dir, auth: authority, revokedUserKeys: revoked });
    expect(await connectError(asAgent(A))).toMatch(/authorization violation/i);
    expect(await connectError(asAgent(B))).toBe('connected');
  });
});

describe('startNatsServer', () => {
  it('says how to install nats-server when there is none', async () => {
    await expect(startNatsServer({ dir, binary: join(dir, 'no-such-nats-server') })).rejects.toThrow(
      /nats-server not found.*apt-get install nats-server.*brew install nats-server.*NATS_URL/,
    );
  });

  it('runs without auth, with JetStream, and stops', async () => {
    const plain = await startNatsServer({ dir: join(dir, 'plain') });
    const nc = await connect({ servers: plain.url, timeout: 3000, reconnect: false });
    const info = await (await jetstreamManager(nc)).getAccountInfo();
    expect(info.streams).toBe(0);
    const closed = nc.closed();
    await plain.stop();
    expect(await within(closed, 5000, 'still open')).not.toBe('still open');
    expect(await connectError({ servers: plain.url })).toMatch(/refused|CONNECTION_REFUSED/i);
  });

  it("rejects with the server's own words when it exits before it is ready", async () => {
    const first = await startNatsServer({ dir: join(dir, 'first') });
    try {
      await expect(startNatsServer({ dir: join(dir, 'second'), port: first.port })).rejects.toThrow(
        /exited .* before it was ready[\s\S]*address already in use/,
      );
    } finally {
      first.kill();
    }
  });
});
