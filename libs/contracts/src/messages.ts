/**
 * Every message between control plane and agent. Each has a `type` and a version `v`; both sides
 * validate on send and on receive. The agent→control-plane schemas are the whole of what may leave
 * the customer's network: no free-form field that could carry dataset rows, every string bounded.
 */
import { z } from 'zod';
import { TrainBackend, TrainEpochMetrics, TrainResult, TrainSpec } from './ml.js';
import { parseNatsServers } from './nats-servers.js';
import { INT32_MAX, storableCount } from './numbers.js';
import { BatchPredictResult, BatchPredictSpec, ServeMetrics, ServeSpec } from './serving.js';
import { storableText } from './text.js';

export const PROTOCOL_VERSION = 1;
/** Hard cap on any encoded message, checked before JSON parsing. */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** Bounds for the log tail an agent may send. */
export const LOG_TAIL = { maxLineChars: 1024, maxLinesPerMessage: 50 } as const;

const id = z.uuid();
const fencingToken = z.number().int().positive();
const shortText = storableText;
const attemptRef = { jobId: id, attemptId: id, fencingToken };

export const JobOutcome = z.enum(['SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT']);
export type JobOutcome = z.infer<typeof JobOutcome>;

// ---- control plane → agent ----------------------------------------------------------------

/** What every dispatch carries, whatever the job kind. */
const dispatchBase = {
  type: z.literal('job.dispatch'),
  v: z.literal(1),
  ...attemptRef,
  env: z.record(
    z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
      .max(128),
    shortText(8192),
  ),
  /** Null only for `serve`: a deployment runs until it is cancelled. */
  timeoutSeconds: z
    .number()
    .int()
    .positive()
    .max(7 * 24 * 3600)
    .nullable(),
  cancelGraceSeconds: z.number().int().min(0).max(600),
  /** Whole GPUs the job needs on its host (the agent assigns them, never shared); absent: none. */
  gpus: z.number().int().min(1).max(64).optional(),
  /** Only GPUs of this vendor; absent: whichever vendor has enough free. */
  gpuVendor: z.enum(['nvidia', 'amd']).optional(),
};

export const JobDispatch = z.discriminatedUnion('kind', [
  /** Any program, run without a shell: the escape hatch for sklearn, XGBoost, PyTorch… */
  z
    .object({
      ...dispatchBase,
      kind: z.literal('command'),
      command: z.array(shortText(4096)).min(1).max(256),
    })
    .strict(),
  /** The built-in tabular trainer. */
  z.object({ ...dispatchBase, kind: z.literal('train'), train: TrainSpec }).strict(),
  /** Predictions for a dataset, written to the customer's artifact store. */
  z.object({ ...dispatchBase, kind: z.literal('batch_predict'), batchPredict: BatchPredictSpec }).strict(),
  /** A deployment: serve the model over the Open Inference Protocol until cancelled. */
  z.object({ ...dispatchBase, kind: z.literal('serve'), serve: ServeSpec }).strict(),
]);
export type JobDispatch = z.infer<typeof JobDispatch>;

export const JobCancel = z
  .object({
    type: z.literal('job.cancel'),
    v: z.literal(1),
    ...attemptRef,
    graceSeconds: z.number().int().min(0).max(600),
  })
  .strict();
export type JobCancel = z.infer<typeof JobCancel>;

export const DownMessage = z.discriminatedUnion('type', [JobDispatch, JobCancel]);
export type DownMessage = z.infer<typeof DownMessage>;

// ---- agent → control plane ----------------------------------------------------------------

export const GpuInfo = z
  .object({
    vendor: z.enum(['nvidia', 'amd', 'other']),
    name: shortText(128),
    memoryBytes: z.number().int().min(0).nullable(),
  })
  .strict();
export type GpuInfo = z.infer<typeof GpuInfo>;

export const SystemInfo = z
  .object({
    hostname: shortText(255),
    os: shortText(64),
    arch: shortText(32),
    cpus: z.number().int().min(0).max(65536),
    memoryBytes: z.number().int().min(0),
    gpus: z.array(GpuInfo).max(64),
    agentVersion: shortText(32),
  })
  .strict();
export type SystemInfo = z.infer<typeof SystemInfo>;

export const AgentHeartbeat = z
  .object({
    type: z.literal('agent.heartbeat'),
    v: z.literal(1),
    agentId: id,
    sentAt: z.iso.datetime(),
    /** Attempts the agent is running now: the control plane keeps their leases alive. */
    running: z.array(z.object({ attemptId: id, fencingToken }).strict()).max(1024),
    /** Capacity: how many more jobs the agent would take now. */
    freeSlots: z.number().int().min(0).max(1024),
    /**
     * Present and true once the agent is stopping (drain): it takes nothing new, so the control
     * plane sends it nothing, not even the deployments it gives back.
     */
    stopping: z.literal(true).optional(),
    system: SystemInfo,
  })
  .strict();
export type AgentHeartbeat = z.infer<typeof AgentHeartbeat>;

/** Request (core NATS request/reply): the agent asks to start an attempt it received. */
export const JobClaim = z.object({ type: z.literal('job.claim'), v: z.literal(1), ...attemptRef }).strict();
export type JobClaim = z.infer<typeof JobClaim>;

export const JobClaimReply = z
  .object({
    type: z.literal('job.claim.reply'),
    v: z.literal(1),
    ok: z.boolean(),
    /** When refused: why (stale attempt, cancelled, unknown job). */
    reason: shortText(256).optional(),
  })
  .strict();
export type JobClaimReply = z.infer<typeof JobClaimReply>;

/** A bounded slice of the job's output; the full log stays in the agent's data dir. */
export const JobLog = z
  .object({
    type: z.literal('job.log'),
    v: z.literal(1),
    ...attemptRef,
    seq: storableCount,
    lines: z
      .array(
        z.object({ stream: z.enum(['stdout', 'stderr']), text: shortText(LOG_TAIL.maxLineChars) }).strict(),
      )
      .max(LOG_TAIL.maxLinesPerMessage),
    /** Lines the agent's rate limit dropped since the previous message. */
    dropped: storableCount,
  })
  .strict();
export type JobLog = z.infer<typeof JobLog>;

export const JobFinished = z
  .object({
    type: z.literal('job.finished'),
    v: z.literal(1),
    ...attemptRef,
    outcome: JobOutcome,
    exitCode: z
      .number()
      .int()
      .min(-(2 ** 31))
      .max(INT32_MAX)
      .nullable(),
    signal: shortText(16).nullable(),
    /** Short, agent-written explanation (e.g. "timed out after 5s", "spawn ENOENT"). Never output. */
    reason: shortText(512).nullable(),
    finishedAt: z.iso.datetime(),
    /** What a successful `train` or `batch_predict` produced: metadata only. */
    result: z
      .discriminatedUnion('kind', [
        z.object({ kind: z.literal('train'), train: TrainResult }).strict(),
        z.object({ kind: z.literal('batch_predict'), batchPredict: BatchPredictResult }).strict(),
      ])
      .optional(),
  })
  .strict();
export type JobFinished = z.infer<typeof JobFinished>;

/**
 * The agent gives an attempt back unfinished because it is stopping: a deployment it served, or a
 * job its drain timeout (or a forced stop) killed. Not the job's doing: the control plane queues
 * the job again, and the attempt does not count against maxAttempts. Ends the attempt like
 * job.finished (the same message id), so an attempt is ended once.
 */
export const JobReleased = z
  .object({
    type: z.literal('job.released'),
    v: z.literal(1),
    ...attemptRef,
    /** Agent-written, e.g. "agent stopped: drain timeout of 30s". Never output. */
    reason: shortText(512),
    releasedAt: z.iso.datetime(),
  })
  .strict();
export type JobReleased = z.infer<typeof JobReleased>;

/** Progress of a running job: numbers only, each kind bounded. Ordered per attempt by seq. */
export const JobProgress = z
  .object({
    type: z.literal('job.progress'),
    v: z.literal(1),
    ...attemptRef,
    seq: storableCount,
    progress: z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('train.backend'), backend: TrainBackend }).strict(),
      z.object({ kind: z.literal('train.epoch'), metrics: TrainEpochMetrics }).strict(),
      z
        .object({
          kind: z.literal('serve.ready'),
          /** The base URL the agent serves the Open Inference Protocol on, inside the customer network. */
          endpoint: z
            .string()
            .max(512)
            .regex(/^https?:\/\/[^\s/]+(\/\S*)?$/),
          executionProvider: z.enum(['cuda', 'cpu']),
        })
        .strict(),
      z.object({ kind: z.literal('serve.metrics'), metrics: ServeMetrics }).strict(),
    ]),
  })
  .strict();
export type JobProgress = z.infer<typeof JobProgress>;

/** What travels on the events subject (UP_STREAM). */
export const UpEvent = z.discriminatedUnion('type', [JobLog, JobProgress, JobFinished, JobReleased]);
export type UpEvent = z.infer<typeof UpEvent>;

// ---- enrollment (HTTPS, agent → control plane) ---------------------------------------------

export const JOIN_PATH = '/api/v1/agents/join';

export const JoinRequest = z
  .object({
    token: shortText(256).min(1),
    /** The agent's own NATS user public key (nkey, starts with U). Its seed never leaves the agent. */
    publicKey: z.string().regex(/^U[A-Z2-7]{55}$/),
    labels: z.record(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/), shortText(63)).default({}),
    system: SystemInfo,
  })
  .strict();
export type JoinRequest = z.infer<typeof JoinRequest>;

export const JoinResponse = z
  .object({
    agentId: id,
    /** The agent's organization; also its tenant id, the second token of every subject it uses. */
    organizationId: id,
    /** NATS servers the agent connects to (nats://, tls:// or host:port; see parseNatsServers). */
    natsServers: z
      .array(
        z
          .string()
          .max(1024)
          .refine(
            (s) => !s.includes(',') && 'servers' in parseNatsServers(s),
            'is not a NATS server address',
          ),
      )
      .min(1)
      .max(64),
    /** A user JWT for the agent's public key, or null when the NATS server runs without auth. */
    natsJwt: z.string().nullable(),
    heartbeatSeconds: z.number().positive(),
  })
  .strict();
export type JoinResponse = z.infer<typeof JoinResponse>;

// ---- validation ---------------------------------------------------------------------------

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

/**
 * Decodes and validates bytes from the wire. Never throws: oversized, non-JSON and schema-invalid
 * input all come back as a short error string fit for a counter label and a log line.
 */
export function decode<S extends z.ZodType>(schema: S, data: Uint8Array): ParseResult<z.infer<S>> {
  if (data.byteLength > MAX_MESSAGE_BYTES)
    return { ok: false, error: `oversized (${data.byteLength} bytes)` };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      ok: false,
      error: `invalid: ${issue.path.join('.') || '(root)'}: ${issue.message}`.slice(0, 300),
    };
  }
  return { ok: true, value: parsed.data };
}

/** Validates before sending; a message we would not accept ourselves is a bug, so this throws. */
/** A message over MAX_MESSAGE_BYTES once encoded: no receiver would accept it. */
export class MessageTooLargeError extends Error {
  override readonly name = 'MessageTooLargeError';
  constructor(readonly bytes: number) {
    super(`message too large: ${bytes} bytes`);
  }
}

export function encode<S extends z.ZodType>(schema: S, message: z.input<S>): Uint8Array {
  const value = schema.parse(message);
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  if (bytes.byteLength > MAX_MESSAGE_BYTES) throw new MessageTooLargeError(bytes.byteLength);
  return bytes;
}
