/**
 * Telemetry ingest from NATS. Agents publish batches to their own subject in a JetStream stream of its
 * own, and get the stream's ack. JetStream rather than core NATS: the agent keeps a sample in its
 * buffer until the stream has acknowledged it, so nothing is lost across a NATS restart or a control
 * plane outage, and what the stream has accepted survives until a replica has committed it to
 * Postgres (explicit acks, after the commit). The stream has limits of its own (bytes, age, messages
 * per agent, new messages refused per agent): a flooding agent fills its own share and then gets
 * errors, and buffers; the others are unaffected, and the control plane's disk is bounded.
 *
 * The replicas share one durable pull consumer. Each message is checked before it costs anything:
 * the subject names an agent, the agent has rate allowance left, the bytes are a valid AgentTelemetry
 * whose agentId is the subject's. What fails is rejected, counted and terminated (never redelivered);
 * the rest is written in batches (TelemetryWriter), and acked once committed.
 */
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import {
  AckPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  type ConsumerMessages,
  type JsMsg,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { AgentTelemetry, decode, subjects, TELEMETRY_CONSUMER, TELEMETRY_STREAM } from '@hearth/contracts';
import { CONFIG, type Config } from '../../config/config.js';
import { LOGGER } from '../../platform/logging/logging.module.js';
import { NatsService } from '../../platform/messaging/nats.service.js';
import { agentMessagesRejected } from '../../platform/metrics/metrics.js';
import type { IngestMessage } from './ingest-rows.js';
import { AgentRateLimiter } from './rate-limiter.js';
import {
  telemetryDroppedByAgents,
  telemetryFlush,
  telemetryLag,
  telemetryLeftOut,
  telemetrySamples,
} from './telemetry.metrics.js';
import { TelemetryWriter } from './telemetry-writer.service.js';

interface Pending {
  msg: JsMsg;
  item: IngestMessage;
}

/** Flushes writing at once per replica: one filling while one commits. */
const MAX_FLUSHES = 2;
const RETRY_DELAY_MS = 2000;
/** Postgres data exceptions (22) and integrity violations (23): this data, not the database, is the problem. */
const DATA_ERROR = /^2[23]/;

@Injectable()
export class TelemetryConsumer implements OnApplicationShutdown {
  private messages: ConsumerMessages | null = null;
  private loop: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private pending: Pending[] = [];
  private pendingGpuSamples = 0;
  private readonly flushing = new Set<Promise<void>>();
  private readonly limiter: AgentRateLimiter;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(NatsService) private readonly nats: NatsService,
    @Inject(TelemetryWriter) private readonly writer: TelemetryWriter,
  ) {
    this.limiter = new AgentRateLimiter({
      burst: config.telemetry.agentBurstSamples,
      perSecond: config.telemetry.agentSamplesPerSecond,
    });
  }

  async start(): Promise<void> {
    await this.ensureStream();
    const consumer = await this.nats.js.consumers.get(TELEMETRY_STREAM, TELEMETRY_CONSUMER);
    this.messages = await consumer.consume({ max_messages: 5000 });
    this.loop = this.consume(this.messages);
    this.timer = setInterval(() => void this.flush(), this.config.telemetry.flushMs);
  }

  private async ensureStream(): Promise<void> {
    const jsm = await this.nats.jsm();
    const t = this.config.telemetry;
    const config = {
      name: TELEMETRY_STREAM,
      subjects: [subjects.wildcard.telemetry],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      max_bytes: t.streamMaxBytes,
      max_age: nanos(24 * 3600_000),
      max_msgs_per_subject: t.streamMaxMessagesPerAgent,
      discard: DiscardPolicy.New,
      discard_new_per_subject: true,
      duplicate_window: nanos(2 * 60_000),
      max_msg_size: 128 * 1024,
    };
    await this.nats.ensureStream(config);
    await jsm.consumers.add(TELEMETRY_STREAM, {
      durable_name: TELEMETRY_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(60_000),
      max_ack_pending: 100_000,
    });
  }

  private async consume(messages: ConsumerMessages): Promise<void> {
    for await (const msg of messages) {
      this.receive(msg);
      if (this.pendingGpuSamples + this.pending.length >= this.config.telemetry.flushSamples)
        await this.flush();
    }
  }

  private reject(msg: JsMsg, reason: string): void {
    agentMessagesRejected.inc({ kind: 'telemetry', reason: reason.split(':')[0] });
    this.log.warn({ kind: 'telemetry', subject: msg.subject, reason }, 'agent message rejected');
    msg.term();
  }

  /** The checks that need no database, cheapest first; what passes waits for the next flush. */
  private receive(msg: JsMsg): void {
    const address = subjects.parse(msg.subject);
    if (!address) return this.reject(msg, 'bad subject');
    if (!this.limiter.hasAllowance(address.agentId)) return this.reject(msg, 'rate limited');
    const decoded = decode(AgentTelemetry, msg.data);
    if (!decoded.ok) return this.reject(msg, decoded.error);
    const message = decoded.value;
    if (message.agentId !== address.agentId) return this.reject(msg, 'agent id does not match subject');
    if (!this.limiter.take(address.agentId, message.samples.length)) return this.reject(msg, 'rate limited');
    this.pending.push({ msg, item: { ...address, message } });
    for (const s of message.samples) this.pendingGpuSamples += s.gpus.length;
  }

  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    while (this.flushing.size >= MAX_FLUSHES) await Promise.race(this.flushing);
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.pendingGpuSamples = 0;
    const task = this.writeAndAck(batch).finally(() => this.flushing.delete(task));
    this.flushing.add(task);
  }

  private async writeAndAck(batch: Pending[]): Promise<void> {
    const stop = telemetryFlush.startTimer();
    try {
      const result = await this.writer.write(batch.map((p) => p.item));
      const committed = Date.now();
      batch.forEach((p, i) => {
        const refused = result.refused.get(i);
        if (refused) this.reject(p.msg, refused);
        else p.msg.ack();
      });
      telemetrySamples.inc({ kind: 'host' }, result.hostSamples);
      telemetrySamples.inc({ kind: 'gpu' }, result.gpuSamples);
      telemetryDroppedByAgents.inc(result.droppedByAgents);
      if (result.outOfRange) telemetryLeftOut.inc({ reason: 'out of time range' }, result.outOfRange);
      if (result.unknownJobs) telemetryLeftOut.inc({ reason: 'unknown job' }, result.unknownJobs);
      if (result.outsideRun) telemetryLeftOut.inc({ reason: 'outside the job run' }, result.outsideRun);
      for (const at of result.newest) telemetryLag.observe(Math.max(0, committed - at) / 1000);
      this.log.debug(
        { messages: batch.length, gpuSamples: result.gpuSamples, ...result.timings },
        'telemetry batch written',
      );
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && DATA_ERROR.test(code)) {
        // Something in this batch is not storable: find it by halves; the rest is written.
        if (batch.length === 1) return this.reject(batch[0].msg, `not storable: ${code}`);
        const half = Math.ceil(batch.length / 2);
        await this.writeAndAck(batch.slice(0, half));
        await this.writeAndAck(batch.slice(half));
        return;
      }
      this.log.error({ err, messages: batch.length }, 'telemetry batch not written; redelivering');
      for (const p of batch) p.msg.nak(RETRY_DELAY_MS);
    } finally {
      stop();
    }
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.messages?.close();
    await this.loop;
    await this.flush();
    await Promise.all(this.flushing);
  }
}
