/**
 * The egress guard: the one door every outgoing message passes. Each message is encoded with the
 * contract's schema (so nothing the contract does not allow can leave), recorded in the local
 * ledger, and only then sent. The subject is chosen here from the message type and this agent's
 * address: callers cannot send anywhere else. No other module publishes or requests.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { JetStreamApiError, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import {
  AgentHeartbeat,
  AgentTelemetry,
  JOIN_PATH,
  JobClaim,
  JobClaimReply,
  JoinRequest,
  UpEvent,
  decode,
  encode,
  subjects,
  type AgentAddress,
} from '@hearth/contracts';
import type { EgressLedger } from './ledger.js';

/** A message the contract does not allow: a bug on our side, so it is refused, never sent. */
export class EgressRefusedError extends Error {
  override readonly name = 'EgressRefusedError';
}

/**
 * The stream refused an event for its limits: this agent's share of it is full (or the whole stream
 * is), until the control plane has consumed what it holds. Not a hiccup to retry at once: what may
 * be dropped is dropped (and counted), what must arrive is retried with backoff.
 */
export class StreamFullError extends Error {
  override readonly name = 'StreamFullError';
}

/** nats-server's "stream store failed": maximum messages per subject, messages or bytes exceeded. */
const STREAM_STORE_FAILED = 10077;

/** The control plane answered a claim with something the contract does not allow. */
export class InvalidReplyError extends Error {
  override readonly name = 'InvalidReplyError';
}

export type CoreTransport = Pick<NatsConnection, 'publish' | 'request'>;
export type StreamTransport = Pick<JetStreamClient, 'publish'>;

export interface EgressGuardOptions {
  nc: CoreTransport;
  js: StreamTransport;
  ledger: EgressLedger;
  address: AgentAddress;
  /** How long a claim or a JetStream publish waits for its answer. */
  timeoutMs?: number;
}

export class EgressGuard {
  private readonly timeoutMs: number;

  constructor(private readonly options: EgressGuardOptions) {
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  /** Core NATS, fire and forget: the next heartbeat is the retry. */
  heartbeat(message: AgentHeartbeat): void {
    const subject = subjects.heartbeat(this.options.address);
    this.options.nc.publish(
      subject,
      seal(this.options.ledger, AgentHeartbeat, message, subject, message.type),
    );
  }

  /** Request/reply; throws on no responders, timeout or an invalid reply, so the caller retries. */
  async claim(message: JobClaim): Promise<JobClaimReply> {
    const subject = subjects.claim(this.options.address);
    const bytes = seal(this.options.ledger, JobClaim, message, subject, message.type);
    const reply = await this.options.nc.request(subject, bytes, { timeout: this.timeoutMs });
    const parsed = decode(JobClaimReply, reply.data);
    if (!parsed.ok) throw new InvalidReplyError(`claim reply ${parsed.error}`);
    return parsed.value;
  }

  /**
   * JetStream publish to the events subject; resolves with the stream's PubAck, throws when it
   * does not come: StreamFullError when the stream refused it for its limits. The message id makes
   * retries of the same event idempotent in the stream.
   */
  async event(message: UpEvent): Promise<PubAck> {
    const subject = subjects.events(this.options.address);
    const bytes = seal(this.options.ledger, UpEvent, message, subject, message.type);
    // An attempt ends once, finished or released: the same id, so the stream keeps the first.
    const msgID =
      message.type === 'job.finished' || message.type === 'job.released'
        ? `${message.attemptId}.finished`
        : message.type === 'job.progress'
          ? `${message.attemptId}.progress.${message.seq}`
          : `${message.attemptId}.log.${message.seq}`;
    try {
      return await this.options.js.publish(subject, bytes, { msgID, timeout: this.timeoutMs });
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === STREAM_STORE_FAILED)
        throw new StreamFullError(`${message.type} refused by the stream: ${err.message}`, { cause: err });
      throw err;
    }
  }

  /**
   * JetStream publish of a telemetry batch; resolves once the stream has it, throws when the ack
   * does not come (the caller puts the batch back and retries). The message id makes a retry of
   * the same batch idempotent in the stream; the control plane also ignores samples it already has.
   */
  async telemetry(message: AgentTelemetry): Promise<PubAck> {
    const subject = subjects.telemetry(this.options.address);
    const bytes = seal(this.options.ledger, AgentTelemetry, message, subject, message.type);
    const msgID = `${message.agentId}.tel.${message.samples[0]?.at}.${message.samples.length}`;
    return this.options.js.publish(subject, bytes, { msgID, timeout: this.timeoutMs });
  }
}

/**
 * Enrollment over HTTPS goes through the guard too: the request is schema-checked and recorded in
 * the ledger (its hash only: it holds the join token) before it is posted.
 */
export async function postJoinRequest(
  ledger: EgressLedger,
  baseUrl: string,
  request: JoinRequest,
  timeoutMs = 30_000,
): Promise<Response> {
  const url = `${baseUrl}${JOIN_PATH}`;
  const body = seal(ledger, JoinRequest, request, url, 'agent.join');
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
}

type Schema = Parameters<typeof encode>[0];

function seal<S extends Schema>(
  ledger: EgressLedger,
  schema: S,
  message: Parameters<typeof encode<S>>[1],
  subject: string,
  type: string,
): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = encode(schema, message);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new EgressRefusedError(`refused to send an invalid ${type} message: ${detail.slice(0, 500)}`);
  }
  ledger.record(subject, type, bytes);
  return bytes;
}
