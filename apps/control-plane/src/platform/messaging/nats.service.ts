/**
 * The control plane's NATS connection, the two JetStream streams, and the per-agent consumers.
 * With NATS auth configured (operator/account/system seeds) nats-server itself enforces what each
 * agent may do; without it (local development) only our code does, and boot says so loudly.
 */
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import {
  AckPolicy,
  jetstream,
  jetstreamManager,
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
/** Tries of an agent's event before JetStream gives up on it (the consumer logs the last one). */
export const UP_MAX_DELIVER = 20;

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

  /** Creates a stream, or brings an existing one to this configuration. */
  async ensureStream(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    const jsm = await this.jsm();
    try {
      await jsm.streams.info(config.name);
      await jsm.streams.update(config.name, config);
    } catch {
      await jsm.streams.add(config);
    }
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
    const streams = [
      { name: DOWN_STREAM, subjects: [subjects.wildcard.down] },
      { name: UP_STREAM, subjects: [subjects.wildcard.events] },
    ];
    for (const s of streams) {
      const config = {
        ...s,
        retention: RetentionPolicy.Workqueue,
        storage: StorageType.File,
        duplicate_window: nanos(DUPLICATE_WINDOW_MS),
        max_msg_size: 128 * 1024,
      };
      await this.ensureStream(config);
    }
    await jsm.consumers.add(UP_STREAM, {
      durable_name: UP_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(30_000),
      max_deliver: UP_MAX_DELIVER,
      max_ack_pending: 10_000,
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
