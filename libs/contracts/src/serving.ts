/**
 * Wire schemas for the `serve` and `batch_predict` job kinds. Down: which model to load, by its
 * agent-side URI and hash (the control plane never holds weights). Up: numbers only — readiness,
 * request counts and latencies, row counts and the output's hash; never a request, a response or a row.
 */
import { z } from 'zod';
import { storableCount } from './numbers.js';
import { storableText } from './text.js';
import { DatasetFingerprint, FileUri, TRAIN_LIMITS } from './ml.js';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex sha256');

/** A name usable in an Open Inference Protocol path segment. */
export const ServedModelName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be 1-64 of A-Z a-z 0-9 _ . -');

/** An ONNX model file in the customer's artifact store, pinned by its hash. */
export const ModelRef = z
  .object({
    name: ServedModelName,
    version: z.string().regex(/^[1-9][0-9]{0,8}$/),
    uri: FileUri,
    sha256,
  })
  .strict();
export type ModelRef = z.infer<typeof ModelRef>;

/** The `serve` job: keep this model loaded and answering until cancelled (undeploy). */
export const ServeSpec = z.object({ deploymentId: z.uuid(), model: ModelRef }).strict();
export type ServeSpec = z.infer<typeof ServeSpec>;

/** The `batch_predict` job: run the model over a dataset that resolves only on the agent. */
export const BatchPredictSpec = z
  .object({
    model: ModelRef,
    input: z
      .object({
        uri: storableText(TRAIN_LIMITS.maxUriChars).regex(
          /^[A-Za-z][A-Za-z0-9+.-]*:\/\/\S+$/,
          'must be a URI such as file:///data/score.csv',
        ),
        format: z.enum(['csv', 'jsonl']).optional(),
      })
      .strict(),
    /** The input columns in the model's input order; absent: the model's recorded feature names. */
    features: z
      .array(storableText(TRAIN_LIMITS.maxColumnNameChars).min(1))
      .min(1)
      .max(TRAIN_LIMITS.maxFeatures)
      .optional(),
  })
  .strict();
export type BatchPredictSpec = z.infer<typeof BatchPredictSpec>;

export const BatchPredictResult = z
  .object({
    rows: storableCount,
    durationMs: z.number().min(0),
    input: DatasetFingerprint,
    output: z
      .object({ uri: FileUri, sha256, sizeBytes: z.number().int().min(0), format: z.literal('jsonl') })
      .strict(),
  })
  .strict();
export type BatchPredictResult = z.infer<typeof BatchPredictResult>;

/**
 * Request metrics of a served model: counts since its version started serving, and latencies over
 * the last window of the requests the model answered (2xx and 5xx; refused requests are counted,
 * not timed). Counts and latencies only.
 */
export const ServeMetrics = z
  .object({
    windowSeconds: z.number().int().min(1).max(3600),
    requests: z.number().int().min(0),
    /** Requests answered with an error status, 4xx and 5xx. */
    errors: z.number().int().min(0),
    /** Of the errors, the client's mistakes (4xx). Absent from agents that predate the count. */
    clientErrors: z.number().int().min(0).optional(),
    p50Ms: z.number().min(0).nullable(),
    p95Ms: z.number().min(0).nullable(),
    p99Ms: z.number().min(0).nullable(),
  })
  .strict();
export type ServeMetrics = z.infer<typeof ServeMetrics>;

/** Why an agent's BatchPredictResult is not what the job asked for, or null (one line per input row). */
export function batchPredictResultProblem(result: BatchPredictResult): string | null {
  if (result.rows !== result.input.rows)
    return `${result.rows} predictions for ${result.input.rows} input rows`;
  return null;
}
