/**
 * Plays the control plane's side of the wire for the agent's integration test, over the real
 * nats-server: streams (created if missing, shared), this agent's consumers (created and deleted),
 * claim replies, and collection of what the agent sends.
 */
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createUser } from '@nats-io/nkeys';
import {
  AckPolicy,
  RetentionPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { connect, nanos, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import {
  AgentHeartbeat,
  DOWN_STREAM,
  JobCancel,
  JobClaim,
  JobClaimReply,
  JobDispatch,
  UP_STREAM,
  UpEvent,
  consumers,
  decode,
  encode,
  subjects,
  type AgentAddress,
  type JobFinished,
  type JobReleased,
  type JobProgress,
  type ModelRef,
} from '@hearth/contracts';
import { jobDispatch, type DispatchBase, type DispatchSpec, SHARED_NATS_URL } from '@hearth/testing';

export const NATS_URL = SHARED_NATS_URL;

async function ensureStream(jsm: JetStreamManager, name: string, subject: string): Promise<void> {
  try {
    await jsm.streams.info(name);
    return;
  } catch {
    // not there yet: create it below
  }
  try {
    await jsm.streams.add({ name, subjects: [subject], retention: RetentionPolicy.Workqueue });
  } catch (err) {
    await jsm.streams.info(name).catch(() => Promise.reject(err)); // created meanwhile by someone else?
  }
}

export class FakeControlPlane {
  readonly address: AgentAddress = { tenantId: randomUUID(), agentId: randomUUID() };
  readonly claims: JobClaim[] = [];
  readonly events: UpEvent[] = [];
  readonly heartbeats: AgentHeartbeat[] = [];
  readonly invalidUp: string[] = [];
  /** Every message under this agent's subjects, as text, in both directions (for canary checks). */
  readonly wire: string[] = [];
  /** Attempts whose claim is answered ok:false. */
  readonly refuse = new Set<string>();

  private claimSub: { unsubscribe(): void } | null = null;

  private constructor(
    readonly nc: NatsConnection,
    readonly jsm: JetStreamManager,
  ) {}

  static async start(options: Partial<ConnectionOptions> = {}): Promise<FakeControlPlane> {
    const nc = await connect({ servers: NATS_URL, name: 'hearth-agent-test-control-plane', ...options });
    const jsm = await jetstreamManager(nc);
    await ensureStream(jsm, DOWN_STREAM, subjects.wildcard.down);
    await ensureStream(jsm, UP_STREAM, subjects.wildcard.events);
    const cp = new FakeControlPlane(nc, jsm);
    await cp.createConsumers();
    cp.listen();
    return cp;
  }

  private async createConsumers(): Promise<void> {
    for (const [name, filter] of [
      [consumers.jobs(this.address.agentId), subjects.jobs(this.address)],
      [consumers.control(this.address.agentId), subjects.control(this.address)],
    ]) {
      await this.jsm.consumers.add(DOWN_STREAM, {
        durable_name: name,
        filter_subject: filter,
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(30_000),
      });
    }
  }

  /** The control plane is down for claims: requests get "no responders". */
  pauseClaims(): void {
    this.claimSub?.unsubscribe();
    this.claimSub = null;
  }

  resumeClaims(): void {
    this.claimSub ??= this.nc.subscribe(subjects.claim(this.address), {
      callback: (_err, msg) => {
        const claim = decode(JobClaim, msg.data);
        if (!claim.ok) return void this.invalidUp.push(claim.error);
        this.claims.push(claim.value);
        const ok = !this.refuse.has(claim.value.attemptId);
        const reply = ok ? { ok } : { ok, reason: 'attempt is stale' };
        msg.respond(encode(JobClaimReply, { type: 'job.claim.reply', v: 1, ...reply }));
      },
    });
  }

  private listen(): void {
    this.resumeClaims();
    this.nc.subscribe(subjects.agentAll(this.address), {
      callback: (_err, msg) => void this.wire.push(new TextDecoder().decode(msg.data)),
    });
    // A core subscription sees what the agent publishes to the stream, without consuming it.
    this.nc.subscribe(subjects.events(this.address), {
      callback: (_err, msg) => {
        const event = decode(UpEvent, msg.data);
        if (event.ok) this.events.push(event.value);
        else this.invalidUp.push(event.error);
      },
    });
    this.nc.subscribe(subjects.heartbeat(this.address), {
      callback: (_err, msg) => {
        const hb = decode(AgentHeartbeat, msg.data);
        if (hb.ok) this.heartbeats.push(hb.value);
        else this.invalidUp.push(hb.error);
      },
    });
  }

  /** A data dir as `hearth-agent join` leaves it; by default for a NATS server without auth. */
  writeDataDir(
    dataDir: string,
    creds: { servers?: string[]; natsJwt?: string; seed?: Uint8Array } = {},
  ): void {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const file = {
      agentId: this.address.agentId,
      organizationId: this.address.tenantId,
      controlPlaneUrl: 'http://127.0.0.1:1',
      natsServers: creds.servers ?? [NATS_URL],
      natsJwt: creds.natsJwt ?? null,
      heartbeatSeconds: 1,
      labels: {},
    };
    fs.writeFileSync(path.join(dataDir, 'agent.json'), JSON.stringify(file), { mode: 0o600 });
    fs.writeFileSync(path.join(dataDir, 'agent.seed'), creds.seed ?? createUser().getSeed(), { mode: 0o600 });
  }

  /** A `command` job. */
  dispatch(command: string[], extra: Partial<DispatchBase> = {}): Promise<JobDispatch> {
    return this.send({ kind: 'command', command, ...extra });
  }

  /** A job of any kind; base fields default as jobDispatch's (a fresh job, fencing token 1, 60 s timeout). */
  async send(spec: DispatchSpec): Promise<JobDispatch> {
    const job: JobDispatch = jobDispatch(spec);
    await jetstream(this.nc).publish(subjects.jobs(this.address), encode(JobDispatch, job), {
      msgID: job.attemptId,
    });
    return job;
  }

  async cancel(job: JobDispatch, graceSeconds = 5): Promise<void> {
    const { jobId, attemptId, fencingToken } = job;
    const cancel = encode(JobCancel, {
      type: 'job.cancel',
      v: 1,
      jobId,
      attemptId,
      fencingToken,
      graceSeconds,
    });
    await jetstream(this.nc).publish(subjects.control(this.address), cancel);
  }

  async publishRaw(subject: string, data: Uint8Array): Promise<void> {
    await jetstream(this.nc).publish(subject, data);
  }

  finished(attemptId: string): JobFinished | undefined {
    return this.events.find((e): e is JobFinished => e.type === 'job.finished' && e.attemptId === attemptId);
  }

  /** The agent gave the attempt back as it stopped. */
  released(attemptId: string): JobReleased | undefined {
    return this.events.find((e): e is JobReleased => e.type === 'job.released' && e.attemptId === attemptId);
  }

  /** The attempt's progress events, in the order they arrived. */
  progress(attemptId: string): JobProgress['progress'][] {
    return this.events.flatMap((e) =>
      e.type === 'job.progress' && e.attemptId === attemptId ? [e.progress] : [],
    );
  }

  logText(attemptId: string): string[] {
    return this.events
      .flatMap((e) => (e.type === 'job.log' && e.attemptId === attemptId ? e.lines : []))
      .map((l) => l.text);
  }

  /** The endpoint a serve attempt reports in serve.ready; throws if the job finishes first. */
  async waitServeReady(attemptId: string, timeoutMs = 30_000, agentLog?: () => string): Promise<string> {
    let endpoint: string | undefined;
    await waitUntil(
      () => {
        const ready = this.progress(attemptId).find((p) => p.kind === 'serve.ready');
        endpoint = ready?.kind === 'serve.ready' ? ready.endpoint : undefined;
        const finished = this.finished(attemptId);
        if (!endpoint && finished) {
          throw new Error(`serve job finished: ${finished.reason}${agentLog ? `\n${agentLog()}` : ''}`);
        }
        return endpoint !== undefined;
      },
      timeoutMs,
      'serve.ready',
    );
    return endpoint!;
  }

  async waitFinished(attemptId: string, timeoutMs = 20_000): Promise<JobFinished> {
    await waitUntil(() => this.finished(attemptId) !== undefined, timeoutMs, `JobFinished for ${attemptId}`);
    return this.finished(attemptId)!;
  }

  async jobConsumerInfo() {
    return this.jsm.consumers.info(DOWN_STREAM, consumers.jobs(this.address.agentId));
  }

  async close(): Promise<void> {
    for (const name of [consumers.jobs(this.address.agentId), consumers.control(this.address.agentId)]) {
      await this.jsm.consumers.delete(DOWN_STREAM, name).catch(() => false);
    }
    const filter = subjects.agentAll(this.address);
    await this.jsm.streams.purge(DOWN_STREAM, { filter }).catch(() => undefined);
    await this.jsm.streams.purge(UP_STREAM, { filter }).catch(() => undefined);
    await this.nc.drain();
  }
}

/** Writes a model file under the artifact root as `<name>-v<version>.onnx`; the reference a serve job carries. */
export function writeModel(artifactRoot: string, name: string, version: string, bytes: Uint8Array): ModelRef {
  const file = path.join(artifactRoot, `${name}-v${version}.onnx`);
  fs.writeFileSync(file, bytes);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return { name, version, uri: pathToFileURL(file).href, sha256 };
}

export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
