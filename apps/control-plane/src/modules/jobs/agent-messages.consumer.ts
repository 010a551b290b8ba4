/**
 * Listens to what agents send: heartbeats and claims over core NATS (queue group shared by
 * replicas), job events from the UP stream (one durable consumer shared by replicas). Every message
 * is validated against the contract; anything malformed, oversized, unknown or from a revoked agent
 * is rejected, counted and logged, and the control plane keeps serving. Agent traffic is bounded
 * (per agent, and in what it may take of the database pool): see `agentWork`; and one agent's
 * backlog of events does not hold up the others': see `AgentLanes`.
 */
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { ConsumerMessages, JetStreamManager } from '@nats-io/jetstream';
import type { Msg, Subscription } from '@nats-io/transport-node';
import pLimit, { type LimitFunction } from 'p-limit';
import type { Logger } from 'pino';
import {
  AgentHeartbeat,
  CONTROL_PLANE_QUEUE,
  decode,
  encode,
  JobClaim,
  JobClaimReply,
  subjects,
  UP_CONSUMER,
  UP_STREAM,
  UpEvent,
  type AgentAddress,
  type ParseResult,
} from '@hearth/contracts';
import { CONFIG, type Config } from '../../config/config.js';
import { LOGGER } from '../../platform/logging/logging.module.js';
import { agentMessagesRejected, agentMessagesShed } from '../../platform/metrics/metrics.js';
import { NatsService, UP_MAX_DELIVER } from '../../platform/messaging/nats.service.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { FleetService } from '../fleet/fleet.service.js';
import { AgentRateLimiter } from '../telemetry/rate-limiter.js';
import { AgentLanes, type UpMessage } from './agent-lanes.js';
import { AttemptsService } from './attempts.service.js';
import { Dispatcher } from './dispatcher.service.js';

/** Heartbeats and claims waiting for the database beyond this are dropped. */
const MAX_QUEUED = 2000;
/** Per agent: a heartbeat is due every heartbeatSeconds; a stop sends one more at once. */
const HEARTBEAT_BURST = 5;
/** Per agent: claims come one per dispatched attempt (a 64-slot agent fills up in one go). */
const CLAIM_RATE = { burst: 512, perSecond: 256 };
/** Postgres data exceptions (22) and integrity violations (23): this message, not the database, is the problem. */
const DATA_ERROR = /^2[23]/;

/** Events pulled from the stream at once (the consumer's pull batch). */
const PULL_BATCH = 256;
@Injectable()
export class AgentMessagesConsumer implements OnApplicationShutdown {
  private subs: Subscription[] = [];
  private events: ConsumerMessages | null = null;
  private loop: Promise<void> | null = null;
  private readonly lanes: AgentLanes;
  private jsm: JetStreamManager | null = null;
  /** The last event started of each job: the next one of that job waits for it. */
  private readonly perJob = new Map<string, Promise<void>>();
  /**
   * Agents' heartbeats, claims and events take at most half the database pool at once, so a flood
   * from one agent (broken or compromised) leaves the API and the other tenants the rest; and each
   * agent's heartbeats and claims beyond its rate are dropped before they cost a decode or a query.
   */
  private readonly agentWork: LimitFunction;
  private readonly heartbeatRate: AgentRateLimiter;
  private readonly claimRate = new AgentRateLimiter(CLAIM_RATE);

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(NatsService) private readonly nats: NatsService,
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(FleetService) private readonly fleet: FleetService,
    @Inject(AttemptsService) private readonly attempts: AttemptsService,
    @Inject(Dispatcher) private readonly dispatcher: Dispatcher,
  ) {
    this.agentWork = pLimit(Math.max(1, Math.floor(config.database.poolSize / 2)));
    this.heartbeatRate = new AgentRateLimiter({
      burst: HEARTBEAT_BURST,
      perSecond: Math.max(1, 2 / config.fleet.heartbeatSeconds),
    });
    this.lanes = new AgentLanes(
      (msg, a) => this.handleEvent(msg, a),
      {
        read: async (seq) =>
          (await (this.jsm ??= await this.nats.jsm()).streams.getMessage(UP_STREAM, { seq })) ?? null,
        reply: (subject, payload) => this.nats.nc.publish(subject, payload),
      },
      log,
    );
  }

  async start() {
    const nc = this.nats.nc;
    this.subs = [
      nc.subscribe(subjects.wildcard.heartbeat, {
        queue: CONTROL_PLANE_QUEUE,
        callback: (err, msg) => {
          if (!err) this.admit('heartbeat', msg, this.heartbeatRate, (a) => this.onHeartbeat(msg, a));
        },
      }),
      nc.subscribe(subjects.wildcard.claim, {
        queue: CONTROL_PLANE_QUEUE,
        callback: (err, msg) => {
          if (!err) this.admit('claim', msg, this.claimRate, (a) => this.onClaim(msg, a));
        },
      }),
    ];
    const consumer = await this.nats.js.consumers.get(UP_STREAM, UP_CONSUMER);
    this.events = await consumer.consume({ max_messages: PULL_BATCH });
    this.loop = this.consumeEvents(this.events);
  }

  /** Runs `handle` in the agent-work queue, unless the subject is bad, the agent over its rate or the queue full. */
  private admit(kind: string, msg: Msg, rate: AgentRateLimiter, handle: (a: AgentAddress) => Promise<void>) {
    // The subject names the sender: NATS permissions hold each agent to its own.
    const a = this.address(kind, msg.subject);
    if (!a) return;
    if (!rate.take(a.agentId, 1)) {
      agentMessagesShed.inc({ kind, reason: 'rate limited' });
      return;
    }
    if (this.agentWork.pendingCount >= MAX_QUEUED) {
      agentMessagesShed.inc({ kind, reason: 'overloaded' });
      return;
    }
    void this.agentWork(() => handle(a));
  }

  private rejected(kind: string, subject: string, reason: string) {
    agentMessagesRejected.inc({ kind, reason: reason.split(':')[0] });
    this.log.warn({ kind, subject, reason }, 'agent message rejected');
  }

  private address(kind: string, subject: string): AgentAddress | null {
    const a = subjects.parse(subject);
    if (!a) this.rejected(kind, subject, 'bad subject');
    return a;
  }

  private async onHeartbeat(msg: Msg, a: AgentAddress) {
    const hb = decode(AgentHeartbeat, msg.data);
    if (!hb.ok) return this.rejected('heartbeat', msg.subject, hb.error);
    if (hb.value.agentId !== a.agentId)
      return this.rejected('heartbeat', msg.subject, 'agent id does not match subject');
    try {
      const result = await this.tx.tenant(a.tenantId, async (m) => {
        const r = await this.fleet.recordHeartbeat(m, a, hb.value);
        if (!r.accepted) return r;
        // The heartbeat keeps alive the leases of what the agent holds: everything dispatched to it
        // (it may not have pulled it yet) and what it says it runs with the right fencing token.
        await m.query(
          `UPDATE job_attempts SET lease_expires_at = now() + make_interval(secs => $2)
            WHERE agent_id = $1 AND (state = 'DISPATCHED'
               OR (state = 'RUNNING' AND (id, fencing_token) IN (SELECT * FROM unnest($3::uuid[], $4::bigint[]))))`,
          [
            a.agentId,
            this.config.fleet.leaseSeconds,
            hb.value.running.map((r) => r.attemptId),
            hb.value.running.map((r) => r.fencingToken),
          ],
        );
        return r;
      });
      if (!result.accepted) return this.rejected('heartbeat', msg.subject, 'unknown or revoked agent');
      if (result.cameOnline) {
        this.log.info(a, 'agent online');
        this.dispatcher.kick(a.tenantId);
      }
    } catch (err) {
      this.log.error({ err, ...a }, 'heartbeat failed');
    }
  }

  private async onClaim(msg: Msg, a: AgentAddress) {
    const claim = decode(JobClaim, msg.data);
    if (!claim.ok) {
      this.rejected('claim', msg.subject, claim.error);
      msg.respond(
        encode(JobClaimReply, { type: 'job.claim.reply', v: 1, ok: false, reason: 'invalid claim' }),
      );
      return;
    }
    try {
      msg.respond(encode(JobClaimReply, await this.attempts.claim(a, claim.value)));
    } catch (err) {
      // No reply: the agent retries the claim with backoff.
      this.log.error({ err, ...a }, 'claim failed');
    }
  }

  /** Takes each event into its agent's lane (or defers it); the lanes run them. */
  private async consumeEvents(messages: ConsumerMessages) {
    for await (const msg of messages) {
      await this.lanes.room();
      const a = this.address('event', msg.subject);
      if (a) this.lanes.offer(msg, a);
      else msg.term();
    }
    await this.lanes.stop();
  }

  /**
   * Handles one event, after the previous event of the same job is done: a job's log lines and its
   * result are applied in the order the agent sent them. Never rejects.
   */
  private handleEvent(msg: UpMessage, a: AgentAddress): Promise<void> {
    const event = decode(UpEvent, msg.data);
    const key = event.ok ? event.value.jobId : '';
    const task = (this.perJob.get(key) ?? Promise.resolve())
      .then(() => this.agentWork(() => this.onEvent(msg, a, event)))
      .catch((err: unknown) => {
        const code = (err as { code?: unknown }).code;
        if (typeof code === 'string' && DATA_ERROR.test(code)) {
          // This message, not the database, is the problem: every redelivery would fail the same.
          this.rejected('event', msg.subject, `not storable: ${code}`);
          return msg.term();
        }
        const last = msg.deliveries >= UP_MAX_DELIVER;
        this.log.error(
          { err, subject: msg.subject, deliveries: msg.deliveries },
          last
            ? 'event handling failed for the last time; the event is dropped'
            : 'event handling failed; will be redelivered',
        );
        msg.nak(1000);
      });
    this.perJob.set(key, task);
    return task.finally(() => {
      if (this.perJob.get(key) === task) this.perJob.delete(key);
    });
  }

  private async onEvent(msg: UpMessage, a: AgentAddress, event: ParseResult<UpEvent>) {
    if (!event.ok) {
      this.rejected('event', msg.subject, event.error);
      return msg.term();
    }
    const e = event.value;
    if (e.type === 'job.log') await this.attempts.appendLog(a, e);
    else if (e.type === 'job.progress') await this.attempts.progress(a, e);
    else if (e.type === 'job.released') await this.attempts.released(a, e);
    else await this.attempts.finished(a, e);
    msg.ack();
  }

  async onApplicationShutdown() {
    for (const s of this.subs) s.unsubscribe();
    await this.events?.close();
    await this.loop;
  }
}
