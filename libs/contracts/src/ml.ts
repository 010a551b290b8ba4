/**
 * The built-in tabular trainer's wire schemas. TrainSpec travels down (the `train` job's input);
 * everything else travels up and is metadata only: numbers, hashes, names and the agent-side URIs
 * of the artifacts. No field can carry dataset rows; every string and array is bounded so that a
 * TrainResult always fits in one message (MAX_MESSAGE_BYTES).
 */
import { z } from 'zod';
import { INT32_MAX, storableCount } from './numbers.js';
import { storableText } from './text.js';

/** Bounds shared by the trainer (which enforces them on the data) and the schemas. */
export const TRAIN_LIMITS = {
  maxFeatures: 256,
  maxClasses: 100,
  maxColumnNameChars: 128,
  maxLabelChars: 128,
  maxHiddenLayers: 8,
  maxUnits: 1024,
  maxEpochs: 1000,
  maxUriChars: 2048,
} as const;

const finite = z.number();
const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex sha256');

/**
 * Why a file URI cannot be stored as the name of one file, or null. The agent writes them with
 * pathToFileURL: absolute, already normalized, no host. A URI in any other form (`/../`, `%2e%2e`,
 * `//localhost`, an encoded slash, a query) may name one file to whoever reads it and another to
 * whoever resolves it, so it is refused rather than normalized.
 */
export function fileUriProblem(uri: string): string | null {
  if (!/^file:\/\/\S+$/.test(uri)) return 'must be a file:// URI';
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return 'is not a valid URI';
  }
  if (url.host !== '' || !uri.startsWith('file:///')) return 'must name a local file (file:///…)';
  if (url.search || url.hash || url.href !== uri || /%2f|%5c/i.test(uri))
    return 'must be a normalized absolute path (no . or .. segments, no encoded slashes, no query)';
  return null;
}

/** A file in the customer's artifact store, named as the agent names it (see fileUriProblem). */
export const FileUri = storableText(TRAIN_LIMITS.maxUriChars).superRefine((uri, ctx) => {
  const problem = fileUriProblem(uri);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});
const columnName = storableText(TRAIN_LIMITS.maxColumnNameChars).min(1);

export const TrainTask = z.enum(['regression', 'binary', 'multiclass']);
export type TrainTask = z.infer<typeof TrainTask>;

/** Where a training run's math ran: the first backend that loaded, in this order of preference. */
export const TrainBackend = z.enum(['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu']);
export type TrainBackend = z.infer<typeof TrainBackend>;

export const ModelSpec = z.discriminatedUnion('type', [
  /** One dense layer, no activation (regression). */
  z.object({ type: z.literal('linear') }).strict(),
  /** One dense layer with sigmoid (binary) or softmax (multiclass). */
  z.object({ type: z.literal('logistic') }).strict(),
  /** Hidden dense layers with relu, then the task's output layer. */
  z
    .object({
      type: z.literal('mlp'),
      hiddenLayers: z
        .array(z.number().int().min(1).max(TRAIN_LIMITS.maxUnits))
        .min(1)
        .max(TRAIN_LIMITS.maxHiddenLayers),
    })
    .strict(),
]);
export type ModelSpec = z.infer<typeof ModelSpec>;

/** The `train` job's input (control plane → agent). The dataset URI resolves only on the agent. */
export const TrainSpec = z
  .object({
    dataset: z
      .object({
        /** e.g. file:///srv/data/churn.csv; which schemes and paths are allowed is the agent's policy. */
        uri: storableText(TRAIN_LIMITS.maxUriChars).regex(
          /^[A-Za-z][A-Za-z0-9+.-]*:\/\/\S+$/,
          'must be a URI such as file:///data/train.csv',
        ),
        /** Taken from the file extension when absent (.csv; .jsonl or .ndjson). */
        format: z.enum(['csv', 'jsonl']).optional(),
      })
      .strict(),
    target: columnName,
    /** The feature columns; absent means every column but the target. */
    features: z
      .array(columnName)
      .min(1)
      .max(TRAIN_LIMITS.maxFeatures)
      .refine((names) => new Set(names).size === names.length, 'names a column more than once')
      .optional(),
    task: TrainTask,
    model: ModelSpec,
    epochs: z.number().int().min(1).max(TRAIN_LIMITS.maxEpochs).default(20),
    batchSize: z.number().int().min(1).max(65_536).default(32),
    learningRate: z.number().positive().max(10).default(0.01),
    /** Fraction of the rows held out (chosen by the seed) for validation; 0 for none. */
    validationSplit: z.number().min(0).max(0.5).default(0.2),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .default(0),
  })
  .strict()
  .refine((spec) => spec.model.type !== 'logistic' || spec.task !== 'regression', {
    message: 'a logistic model needs a binary or multiclass task',
    path: ['model'],
  })
  .refine((spec) => spec.model.type !== 'linear' || spec.task === 'regression', {
    message: 'a linear model is for regression; use logistic for classification',
    path: ['model'],
  })
  .refine((spec) => !spec.features?.includes(spec.target), {
    message: 'the target column cannot also be a feature',
    path: ['features'],
  });
export type TrainSpec = z.infer<typeof TrainSpec>;
export type TrainSpecInput = z.input<typeof TrainSpec>;

/**
 * One epoch's numbers. The quality metrics are computed on the validation rows when there are
 * some, else on the training rows. `auc` is null when those rows hold only one class.
 */
export const TrainEpochMetrics = z
  .object({
    /** 1-based: the number of epochs completed. */
    epoch: z.number().int().min(1).max(TRAIN_LIMITS.maxEpochs),
    loss: finite,
    valLoss: finite.nullable(),
    /** binary and multiclass */
    accuracy: finite.min(0).max(1).optional(),
    /** binary */
    auc: finite.min(0).max(1).nullable().optional(),
    /** regression */
    rmse: finite.min(0).optional(),
    mae: finite.min(0).optional(),
  })
  .strict();
export type TrainEpochMetrics = z.infer<typeof TrainEpochMetrics>;

/** Identifies the training data without revealing it: computed on the agent. */
export const DatasetFingerprint = z.object({ sha256, rows: storableCount }).strict();
export type DatasetFingerprint = z.infer<typeof DatasetFingerprint>;

export const TensorSignature = z
  .object({
    name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.:/-]{0,63}$/),
    /** Open Inference Protocol v2 datatype names. */
    datatype: z.enum(['FP32', 'FP64', 'INT32', 'INT64', 'BOOL', 'BYTES']),
    /** -1 for a dimension of any size (the batch). */
    shape: z.array(z.number().int().min(-1).max(INT32_MAX)).max(8),
  })
  .strict();
export type TensorSignature = z.infer<typeof TensorSignature>;

export const ModelSignature = z
  .object({
    inputs: z.array(TensorSignature).min(1).max(16),
    outputs: z.array(TensorSignature).min(1).max(16),
  })
  .strict();
export type ModelSignature = z.infer<typeof ModelSignature>;

export const ModelFormat = z.enum(['onnx', 'tfjs']);
export type ModelFormat = z.infer<typeof ModelFormat>;

/**
 * A model file in the customer's artifact store. For `onnx`, uri/sha256/sizeBytes are the .onnx
 * file's. For `tfjs`, uri and sha256 are model.json's (which records weights.bin's sha256, so the
 * hash covers both) and sizeBytes is model.json plus weights.bin.
 */
export const ModelArtifact = z
  .object({
    uri: FileUri,
    sha256,
    sizeBytes: z.number().int().min(0),
    format: ModelFormat,
    signature: ModelSignature,
  })
  .strict();
export type ModelArtifact = z.infer<typeof ModelArtifact>;

/** What a finished `train` job reports (agent → control plane). */
export const TrainResult = z
  .object({
    backend: TrainBackend,
    datasetFingerprint: DatasetFingerprint,
    /** The last epoch's metrics. */
    metrics: TrainEpochMetrics,
    artifacts: z.array(ModelArtifact).min(1).max(4),
    /** The model's input columns, in input order. */
    featureNames: z.array(columnName).min(1).max(TRAIN_LIMITS.maxFeatures),
    /** Classification: the class names; output index i is labels[i] (binary: P(labels[1])). */
    labels: z.array(storableText(TRAIN_LIMITS.maxLabelChars)).min(2).max(TRAIN_LIMITS.maxClasses).optional(),
  })
  .strict();
export type TrainResult = z.infer<typeof TrainResult>;

/**
 * Why an agent's TrainResult cannot be the model the job asked for, or null. The contract bounds
 * each field alone; this checks them against the job's spec and each other, as the built-in trainer
 * produces them (trainer.ts, artifacts.ts): the agent is untrusted, and what is registered here is
 * what users compare, promote and serve. `reportedBackend` is what the attempt said it ran on.
 */
export function trainResultProblem(
  spec: TrainSpec,
  result: TrainResult,
  reportedBackend?: TrainBackend,
): string | null {
  const { featureNames: names, labels, metrics } = result;
  if (new Set(names).size !== names.length) return 'featureNames names a column more than once';
  if (spec.features && names.join('\u0000') !== spec.features.join('\u0000'))
    return `featureNames [${names.join(', ')}] are not the job's features [${spec.features.join(', ')}]`;
  if (names.includes(spec.target)) return `featureNames include the target column ${spec.target}`;

  if (spec.task === 'regression' ? labels !== undefined : labels === undefined)
    return spec.task === 'regression'
      ? 'a regression model has no labels'
      : `a ${spec.task} model needs labels`;
  if (labels && new Set(labels).size !== labels.length) return 'labels name a class more than once';
  if (spec.task === 'binary' && labels?.length !== 2)
    return `a binary model has 2 labels, not ${labels?.length}`;

  const present = (['accuracy', 'auc', 'rmse', 'mae'] as const).filter((k) => metrics[k] !== undefined);
  const expected = { regression: ['rmse', 'mae'], binary: ['accuracy', 'auc'], multiclass: ['accuracy'] }[
    spec.task
  ];
  if (present.join() !== expected.join())
    return `a ${spec.task} model reports ${expected.join(' and ')}, not ${present.join(' and ') || 'nothing'}`;
  if (metrics.epoch !== spec.epochs)
    return `metrics are of epoch ${metrics.epoch}; the job ran ${spec.epochs}`;
  if (metrics.loss < 0 || (metrics.valLoss ?? 0) < 0) return 'a loss cannot be negative';
  if (spec.validationSplit === 0 && metrics.valLoss !== null)
    return 'a validation loss without validation rows (validationSplit is 0)';
  if (result.datasetFingerprint.rows < 1) return 'a model trained on no rows';
  if (reportedBackend && result.backend !== reportedBackend)
    return `trained on ${result.backend}, but the job reported ${reportedBackend}`;

  const formats = result.artifacts.map((a) => a.format);
  if (new Set(formats).size !== formats.length) return 'more than one artifact of a format';
  if (!formats.includes('onnx')) return 'no ONNX artifact';
  const outputs = spec.task === 'multiclass' ? labels!.length : 1;
  for (const { format, signature } of result.artifacts) {
    const [input] = signature.inputs;
    const [output] = signature.outputs;
    if (signature.inputs.length !== 1 || input.shape.join() !== `-1,${names.length}`)
      return `the ${format} artifact's input is not [-1, ${names.length}] (one value per feature)`;
    if (signature.outputs.length !== 1 || output.shape.join() !== `-1,${outputs}`)
      return `the ${format} artifact's output is not [-1, ${outputs}]`;
  }
  return null;
}
