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
    uri: storableText(TRAIN_LIMITS.maxUriChars).regex(/^file:\/\/\S+$/),
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
