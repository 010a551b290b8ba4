/**
 * Trains a sequential dense model on a loaded dataset with TensorFlow.js: linear regression,
 * logistic regression (binary or multiclass) or an MLP with relu hidden layers. Repeatable: the
 * initial weights come from seeded initializers and the validation split and each epoch's row
 * order from a seeded generator, so the same seed and data give bit-identical weights on the same
 * backend. Features are standardised with the training rows' mean and std, and that step is part
 * of the model (a frozen first layer), as is the regression target's scale (a frozen last layer):
 * the saved model takes raw features and gives answers in the target's units.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { ModelSpec, TrainEpochMetrics, TrainTask } from '@hearth/contracts';
import type { Dataset } from './dataset.js';
import { INPUT_NAME, OUTPUT_NAME, type DenseActivation, type DenseNetwork } from './onnx-export.js';
import { EPSILON, epochMetrics } from './metrics.js';
import { SeededRandom, deriveSeed } from './seeded-random.js';

export interface TrainerOptions {
  task: TrainTask;
  model: ModelSpec;
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** Fraction of rows held out for validation, 0 to 0.5. */
  validationSplit: number;
  seed: number;
  /** Checked between batches; training stops with signal.reason. */
  signal?: AbortSignal;
  /** Called once per epoch, awaited before the next one starts. */
  onEpoch?: (metrics: TrainEpochMetrics) => void | Promise<void>;
}

export interface TrainedModel {
  /** The whole model, standardisation included: raw features in, predictions out. */
  model: tfl.Sequential;
  /** The same model as plain arrays, for the ONNX exporter. */
  network: DenseNetwork;
  /** The last epoch's metrics. */
  metrics: TrainEpochMetrics;
  history: TrainEpochMetrics[];
  trainRows: number;
  validationRows: number;
}

/** A training run that cannot go on (diverged, too few rows); the message says what to change. */
export class TrainError extends Error {
  override readonly name = 'TrainError';
}

/** Rows per forward pass when evaluating, to bound memory on large validation sets. */
const EVAL_CHUNK = 8192;

export async function trainModel(data: Dataset, options: TrainerOptions): Promise<TrainedModel> {
  const width = data.featureNames.length;
  const classes = options.task === 'multiclass' ? (data.labels?.length ?? 0) : 1;
  const { train, validation } = splitRows(data.rows, options.validationSplit, options.seed);
  const stats = featureStats(data.features, width, train);
  const targetScale = options.task === 'regression' ? targetStats(data.targets, train) : null;

  const model = buildModel(width, classes, options, stats, targetScale);
  const optimizer = tf.train.adam(options.learningRate);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const history: TrainEpochMetrics[] = [];
  try {
    for (let epoch = 1; epoch <= options.epochs; epoch++) {
      const order = new SeededRandom(deriveSeed(options.seed, epoch)).shuffle(train.slice());
      let lossSum = 0;
      for (let start = 0; start < order.length; start += options.batchSize) {
        await nextTurn();
        options.signal?.throwIfAborted();
        const rows = order.subarray(start, Math.min(start + options.batchSize, order.length));
        const batchLoss = tf.tidy(() => {
          const x = tf.tensor2d(gatherFeatures(data.features, width, rows), [rows.length, width]);
          const y = targetTensor(data.targets, rows, options.task, classes);
          const loss = optimizer.minimize(
            () => lossOf(options.task, model.apply(x) as tf.Tensor, y),
            true,
            variables,
          );
          return loss!.dataSync()[0];
        });
        if (!Number.isFinite(batchLoss)) {
          throw new TrainError(
            `training diverged (the loss became ${batchLoss} in epoch ${epoch}): lower the learning rate ` +
              `(now ${options.learningRate}) or check the data for extreme values`,
          );
        }
        lossSum += batchLoss * rows.length;
      }
      const metrics = evaluate(
        model,
        data,
        validation.length > 0 ? validation : train,
        options.task,
        classes,
        {
          epoch,
          loss: lossSum / order.length,
          hasValidation: validation.length > 0,
        },
      );
      history.push(metrics);
      await options.onEpoch?.(metrics);
    }
  } catch (err) {
    model.dispose();
    throw err;
  } finally {
    optimizer.dispose();
  }
  return {
    model,
    network: describeNetwork(model, stats, targetScale),
    metrics: history[history.length - 1],
    history,
    trainRows: train.length,
    validationRows: validation.length,
  };
}

/** Seeded and repeatable: the same rows, seed and fraction always give the same split. */
export function splitRows(
  rows: number,
  fraction: number,
  seed: number,
): { train: Int32Array; validation: Int32Array } {
  // A split asked for is honoured: at least one validation row, and at least one to train on.
  const validationRows = fraction > 0 ? Math.max(1, Math.round(rows * fraction)) : 0;
  if (rows - validationRows < 1) {
    throw new TrainError(
      `the dataset has ${rows} row(s): too few to train on with a validation split of ${fraction}`,
    );
  }
  const order = new SeededRandom(deriveSeed(seed, 0)).shuffle(Int32Array.from({ length: rows }, (_, i) => i));
  return { train: order.slice(0, rows - validationRows), validation: order.slice(rows - validationRows) };
}

interface FeatureStats {
  mean: Float32Array;
  std: Float32Array;
}

/** Mean and (population) standard deviation per feature over the training rows; a constant feature gets std 1. */
function featureStats(features: Float32Array, width: number, rows: Int32Array): FeatureStats {
  const mean = new Float64Array(width);
  const m2 = new Float64Array(width);
  rows.forEach((row, n) => {
    for (let f = 0; f < width; f++) {
      const value = features[row * width + f];
      const delta = value - mean[f];
      mean[f] += delta / (n + 1);
      m2[f] += delta * (value - mean[f]);
    }
  });
  const std = m2.map((s) => Math.sqrt(s / rows.length));
  return { mean: Float32Array.from(mean), std: Float32Array.from(std, (s) => (s > 1e-12 ? s : 1)) };
}

function targetStats(targets: Float32Array, rows: Int32Array): { scale: number; offset: number } {
  let mean = 0;
  let m2 = 0;
  rows.forEach((row, n) => {
    const delta = targets[row] - mean;
    mean += delta / (n + 1);
    m2 += delta * (targets[row] - mean);
  });
  const std = Math.sqrt(m2 / rows.length);
  return { scale: Math.fround(std > 1e-12 ? std : 1), offset: Math.fround(mean) };
}

function buildModel(
  width: number,
  classes: number,
  options: TrainerOptions,
  stats: FeatureStats,
  targetScale: { scale: number; offset: number } | null,
): tfl.Sequential {
  const outputActivation: DenseActivation =
    options.task === 'regression' ? 'linear' : options.task === 'binary' ? 'sigmoid' : 'softmax';
  const hidden = options.model.type === 'mlp' ? options.model.hiddenLayers : [];
  const init = (i: number) => tfl.initializers.glorotUniform({ seed: deriveSeed(options.seed, 1000 + i) });
  const model = tfl.sequential({ name: 'hearth_dense' }); // a fixed name keeps model.json repeatable
  model.add(tfl.layers.inputLayer({ inputShape: [width], name: INPUT_NAME }));
  // (x - mean) / std as a frozen dense layer: x · diag(1/std) + (-mean/std).
  model.add(
    tfl.layers.dense({ units: width, name: 'standardize', trainable: false, kernelInitializer: 'zeros' }),
  );
  hidden.forEach((units, i) => {
    model.add(
      tfl.layers.dense({ units, activation: 'relu', kernelInitializer: init(i), name: `hidden_${i + 1}` }),
    );
  });
  const lastName = targetScale ? 'dense_out' : OUTPUT_NAME;
  model.add(
    tfl.layers.dense({
      units: classes,
      activation: outputActivation,
      kernelInitializer: init(hidden.length),
      name: lastName,
    }),
  );
  if (targetScale)
    model.add(
      tfl.layers.dense({ units: 1, name: OUTPUT_NAME, trainable: false, kernelInitializer: 'zeros' }),
    );

  const diagonal = new Float32Array(width * width);
  const shift = new Float32Array(width);
  for (let f = 0; f < width; f++) {
    diagonal[f * width + f] = 1 / stats.std[f];
    shift[f] = -stats.mean[f] / stats.std[f];
  }
  setWeights(model, 'standardize', [tf.tensor2d(diagonal, [width, width]), tf.tensor1d(shift)]);
  if (targetScale) {
    setWeights(model, OUTPUT_NAME, [
      tf.tensor2d([targetScale.scale], [1, 1]),
      tf.tensor1d([targetScale.offset]),
    ]);
  }
  return model;
}

function setWeights(model: tfl.Sequential, layer: string, weights: tf.Tensor[]): void {
  model.getLayer(layer).setWeights(weights);
  tf.dispose(weights);
}

/** The trained layers' weights as plain arrays, with the standardisation and target scale. */
function describeNetwork(
  model: tfl.Sequential,
  stats: FeatureStats,
  targetScale: { scale: number; offset: number } | null,
): DenseNetwork {
  const trainable = model.layers.filter((layer) => layer.trainable && layer.getWeights().length === 2);
  const layers = trainable.map((layer) => {
    const [kernel, bias] = layer.getWeights();
    const config = layer.getConfig();
    return {
      inputs: kernel.shape[0],
      units: kernel.shape[1] ?? 1,
      // Copies: the arrays must outlive the model's tensors.
      kernel: Float32Array.from(kernel.dataSync()),
      bias: Float32Array.from(bias.dataSync()),
      activation: String(config.activation ?? 'linear') as DenseActivation,
    };
  });
  return {
    featureCount: stats.mean.length,
    standardization: { mean: stats.mean, std: stats.std },
    layers,
    outputScale: targetScale,
  };
}

function lossOf(task: TrainTask, predictions: tf.Tensor, y: tf.Tensor): tf.Scalar {
  if (task === 'regression') return tf.mean(tf.square(tf.sub(predictions, y)));
  const p = tf.clipByValue(predictions, EPSILON, 1 - EPSILON);
  if (task === 'binary') {
    return tf.neg(tf.mean(tf.add(tf.mul(y, tf.log(p)), tf.mul(tf.sub(1, y), tf.log(tf.sub(1, p))))));
  }
  return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.log(p)), 1)));
}

function gatherFeatures(features: Float32Array, width: number, rows: ArrayLike<number>): Float32Array {
  const out = new Float32Array(rows.length * width);
  for (let i = 0; i < rows.length; i++)
    out.set(features.subarray(rows[i] * width, (rows[i] + 1) * width), i * width);
  return out;
}

function targetTensor(
  targets: Float32Array,
  rows: ArrayLike<number>,
  task: TrainTask,
  classes: number,
): tf.Tensor2D {
  if (task !== 'multiclass')
    return tf.tensor2d(
      Float32Array.from(rows, (r) => targets[r]),
      [rows.length, 1],
    );
  const oneHot = new Float32Array(rows.length * classes);
  for (let i = 0; i < rows.length; i++) oneHot[i * classes + targets[rows[i]]] = 1;
  return tf.tensor2d(oneHot, [rows.length, classes]);
}

/** The model's outputs for some rows, [rows × units], in chunks. */
export function predictRows(model: tfl.Sequential, data: Dataset, rows: ArrayLike<number>): Float32Array {
  const width = data.featureNames.length;
  const units = (model.outputs[0].shape[1] as number | null) ?? 1;
  const out = new Float32Array(rows.length * units);
  for (let start = 0; start < rows.length; start += EVAL_CHUNK) {
    const chunk = Array.prototype.slice.call(
      rows,
      start,
      Math.min(start + EVAL_CHUNK, rows.length),
    ) as number[];
    const values = tf.tidy(() => {
      const x = tf.tensor2d(gatherFeatures(data.features, width, chunk), [chunk.length, width]);
      return (model.predict(x, { batchSize: EVAL_CHUNK }) as tf.Tensor).dataSync();
    });
    out.set(values, start * units);
  }
  return out;
}

function evaluate(
  model: tfl.Sequential,
  data: Dataset,
  rows: Int32Array,
  task: TrainTask,
  classes: number,
  at: { epoch: number; loss: number; hasValidation: boolean },
): TrainEpochMetrics {
  const predictions = predictRows(model, data, rows);
  const truth = Float64Array.from(rows, (r) => data.targets[r]);
  const metrics = epochMetrics(task, predictions, truth, classes, at);
  if (metrics === null) {
    throw new TrainError(
      `training diverged (the model's outputs are not finite after epoch ${at.epoch}): lower the learning rate`,
    );
  }
  return metrics;
}

/** Lets timers, I/O and abort listeners run between batches (the kernels are synchronous). */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
