/**
 * The control plane's NATS connection, the two JetStream streams, and the per-agent consumers.
 * With NATS auth configured (operator/account/system seeds) nats-server itself enforces what each
 * agent may do; without it (local development) only our code does, and boot says so loudly.
 */
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import {
  AckPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { connect, jwtAuthenticator, nanos, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  consumers,
  DOWN_STREAM,
  isNatsServerWithoutTls,
  MAX_MESSAGE_BYTES,
  natsTlsRequired,
  subjects,
  UP_CONSUMER,
  UP_STREAM,
  type AgentAddress,
} from '@hearth/contracts';
import { CONFIG, ConfigError, type Config } from '../../config/config.js';
import { LOGGER } from '../logging/logging.module.js';
import { NatsAuthority } from './nats-auth.js';

const DUPLICATE_WINDOW_MS = 10 * 60_000;
const AGENT_ACK_WAIT_MS = 30_000;
/**
 * Times JetStream may hand back an agent's event that the consumer set aside (`nak` with a delay, to
 * let other agents' events go first) before its turn came; it is then taken regardless
 * (agent-messages.consumer, AgentLanes).
 */
export const UP_MAX_DEFERRALS = 8;
/**
 * Deliveries of an agent's event before JetStream gives up on it (the consumer logs the last one):
 * 20 tries, plus the hand-backs of set-aside events, which JetStream counts as deliveries too.
 */
export const UP_MAX_DELIVER = 20 + UP_MAX_DEFERRALS;

/**
 * The UP stream's limits, so that one agent (broken or compromised) fills its own share and then
 * gets errors, while the others and the disk are unaffected. Each agent publishes all its job
 * events on one subject (`subjects.events`), so the per-subject limit is a per-agent limit.
 *
 * What a real agent sends: at most 64 jobs at once (the most we plan for), each shipping its log
 * tail every 250 ms (the tail admits 50 lines/s, up to 50 lines a message, so at most one message
 * per tick at the sustained rate): 64 × 4 = 256 messages/s at the log rate limit, plus progress
 * (a train job's epochs, at most 1,000 per attempt) and one end per attempt. While the control
 * plane consumes, its backlog is what is in flight (and what the consumer set aside past its share
 * of the slots, see AgentLanes): hundreds at most. 10,000 is 39 s of that peak with nothing consumed (a control-plane restart),
 * and hours for a typical agent (a few jobs that do not log at the cap). Past it the agent drops log
 * batches (counted, reported in the next batch's `dropped`) and progress, and retries the ends of
 * attempts until they are accepted: nothing is lost that a job's outcome depends on.
 *
 * Bytes: an agent holds at most 10,000 × 65 KiB ≈ 635 MiB (typically 2 KiB a batch: 20 MiB), so
 * 4 GiB in all is about 200 agents' full backlogs of typical size, and at most a sixth for any one.
 * Age: 7 days, longer than an unnoticed outage of the control plane (a long weekend), so nothing
 * a real agent sent expires before it is read; it only clears out what nobody will consume.
 */
export const UP_LIMITS = {
  maxMessagesPerAgent: 10_000,
  maxBytes: 4 * 1024 ** 3,
  maxAgeMs: 7 * 24 * 3600_000,
} as const;

@Injectable()
export class NatsService implements OnApplicationShutdown {
  private connection: NatsConnection | null = null;
  private readonly reconnectHooks: (() => Promise<void>)[] = [];
  readonly authority: NatsAuthority | null;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.authority = config.nats.auth ? new NatsAuthority(config.nats.auth) : null;
  }

  get nc(): NatsConnection {
    if (!this.connection) throw new Error('NATS is not connected yet');
    return this.connection;
  }

  get js(): JetStreamClient {
    return jetstream(this.nc);
  }

  async jsm(): Promise<JetStreamManager> {
    return jetstreamManager(this.nc);
  }

  /**
   * Creates a stream, or brings an existing one (made by an older version) to this configuration in
   * place: its messages stay. A refused update fails the boot, with nats-server's reason.
   */
  async ensureStream(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    const jsm = await this.jsm();
    const exists = await jsm.streams.info(config.name).then(
      () => true,
      (err: unknown) => {
        if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return false;
        throw err;
      },
    );
    if (exists) await jsm.streams.update(config.name, config);
    else await jsm.streams.add(config);
  }

  async connect(): Promise<void> {
    const servers = this.config.nats.url;
    if (!servers) throw new Error('NATS_URL is not set');
    const creds = this.authority ? await this.authority.serviceCredentials('control-plane') : null;
    if (!creds)
      this.log.warn('NATS runs without auth: agent isolation is enforced by Hearth only, not by nats-server');
    const list = servers.split(',');
    const tlsRequired = natsTlsRequired(list, { beyondLoopback: false });
    this.connection = await connect({
      servers: list,
      // @nats-io/transport-node ignores the tls:// scheme; its `tls: {}` option makes TLS required.
      ...(tlsRequired ? { tls: {} } : {}),
      name: 'hearth-control-plane',
      authenticator: creds ? jwtAuthenticator(creds.jwt, creds.seed) : undefined,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    }).catch((err: unknown) => {
      if (tlsRequired && isNatsServerWithoutTls(err))
        throw new ConfigError(
          `NATS_URL names a tls:// server, and the NATS server reached (${servers}) offers no TLS: ` +
            'enable TLS on nats-server, or name it nats://',
        );
      throw err;
    });
    void this.watchStatus(this.connection);
    this.warnIfAgentsWillRefuse(this.connection);
    await this.ensureStreams();
  }

  /**
   * Agents speak to NATS servers beyond their own machine over TLS only (unless their IT allows
   * plaintext). When the servers agents are given are such servers and the one this process
   * reached offers no TLS, every such agent will refuse to connect: said here, once, at boot.
   */
  private warnIfAgentsWillRefuse(nc: NatsConnection) {
    const agentServers = (this.config.nats.agentUrl ?? '').split(',').filter(Boolean);
    const offersTls = nc.info?.tls_required === true || nc.info?.tls_available === true;
    if (offersTls || !natsTlsRequired(agentServers, { beyondLoopback: true })) return;
    this.log.warn(
      { agentServers, server: nc.getServer() },
      'the NATS server offers no TLS, and agents reach the servers they are given (AGENT_NATS_URL) over TLS only: ' +
        'enable TLS on nats-server, or every agent must run with --allow-plaintext',
    );
  }

  private async watchStatus(nc: NatsConnection) {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect' || s.type === 'error')
        this.log.warn(
          { nats: s.type, server: 'server' in s ? s.server : undefined },
          'NATS connection status',
        );
      if (s.type === 'reconnect') {
        for (const hook of this.reconnectHooks)
          await hook().catch((err: unknown) => this.log.error({ err }, 'reconnect hook failed'));
      }
    }
  }

  private async ensureStreams() {
    const jsm = await this.jsm();
    const common = {
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    };
    await this.ensureStream({
      ...common,
      name: DOWN_STREAM,
      subjects: [subjects.wildcard.down],
      max_msg_size: 128 * 1024,
    });
    await this.ensureStream({
      ...common,
      name: UP_STREAM,
      subjects: [subjects.wildcard.events],
      // What no receiver would accept (MAX_MESSAGE_BYTES) is not stored; 1 KiB is room for headers.
      max_msg_size: MAX_MESSAGE_BYTES + 1024,
      max_msgs_per_subject: UP_LIMITS.maxMessagesPerAgent,
      max_bytes: UP_LIMITS.maxBytes,
      max_age: nanos(UP_LIMITS.maxAgeMs),
      // Full means refused, per agent: an agent's stored events are never thrown away for new ones.
      discard: DiscardPolicy.New,
      discard_new_per_subject: true,
    });
    // Adding an existing durable updates it in place (nats-server 2.9+).
    await jsm.consumers.add(UP_STREAM, {
      durable_name: UP_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(30_000),
      max_deliver: UP_MAX_DELIVER,
      // Events the consumer set aside count here until they are acked: room for several agents' full
      // backlogs (UP_LIMITS), so that those never stop the stream from delivering the others' events.
      max_ack_pending: 10 * UP_LIMITS.maxMessagesPerAgent,
    });
  }

  /** Creates (idempotently) the two durable consumers an agent pulls its work from. */
  async ensureAgentConsumers(a: AgentAddress): Promise<void> {
    const jsm = await this.jsm();
    for (const [name, filter] of [
      [consumers.jobs(a.agentId), subjects.jobs(a)],
      [consumers.control(a.agentId), subjects.control(a)],
    ] as const) {
      await jsm.consumers.add(DOWN_STREAM, {
        durable_name: name,
        filter_subject: filter,
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(AGENT_ACK_WAIT_MS),
        max_ack_pending: 1000,
      });
    }
  }

  async deleteAgentConsumers(agentId: string): Promise<void> {
    const jsm = await this.jsm();
    for (const name of [consumers.jobs(agentId), consumers.control(agentId)]) {
      await jsm.consumers.delete(DOWN_STREAM, name).catch(() => undefined);
    }
  }

  /** Runs `hook` after every reconnect (the server may have restarted and forgotten pushed state). */
  onReconnect(hook: () => Promise<void>) {
    this.reconnectHooks.push(hook);
  }

  /** A user JWT for the agent's own public key, or null when NATS runs without auth. */
  async issueAgentJwt(a: AgentAddress & { publicKey: string }): Promise<string | null> {
    return this.authority ? this.authority.issueAgentJwt(a) : null;
  }

  /** Tells nats-server the full set of revoked agent keys; it drops their connections at once. */
  async pushRevocations(revoked: Map<string, number>): Promise<void> {
    if (!this.authority) return;
    const creds = await this.authority.systemUserCredentials();
    const sys = await connect({
      servers: this.config.nats.url!.split(','),
      name: 'hearth-control-plane-system',
      authenticator: jwtAuthenticator(creds.jwt, creds.seed),
      timeout: 5000,
    });
    try {
      await this.authority.revokeUsers(sys, revoked);
    } finally {
      await sys.close();
    }
  }

  async ping(timeoutMs = 1000): Promise<boolean> {
    if (!this.connection || this.connection.isClosed()) return false;
    try {
      await Promise.race([
        this.connection.flush(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), timeoutMs)),
      ]);
      return true;
    } catch {
      return false;
    }
  }

  async onApplicationShutdown() {
    if (this.connection && !this.connection.isClosed()) await this.connection.drain().catch(() => undefined);
  }
}
