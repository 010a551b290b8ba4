import { beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import type { TrainEpochMetrics, TrainTask } from '@hearth/contracts';
import { ensureBackend } from './backend.js';
import type { Dataset } from './dataset.js';
import { exportOnnx } from './onnx-export.js';
import { SeededRandom } from './seeded-random.js';
import { predictRows, splitRows, trainModel, type TrainerOptions } from './trainer.js';

beforeAll(async () => {
  await ensureBackend();
});

/** rows × 3 features on very different scales; the target depends on all three. */
function synthetic(task: TrainTask, rows: number, seed = 7): Dataset {
  const random = new SeededRandom(seed);
  const width = 3;
  const features = new Float32Array(rows * width);
  const targets = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const a = random.next() * 2 - 1;
    const b = random.next() * 2 - 1;
    const c = random.next() * 2 - 1;
    features.set([a, 1000 + 500 * b, 0.001 * c], r * width);
    const score = 2 * a - b + 1.5 * c;
    if (task === 'regression') targets[r] = 3 * score + 10 + (random.next() - 0.5) * 0.1;
    else if (task === 'binary') targets[r] = score > 0 ? 1 : 0;
    else targets[r] = score < -0.8 ? 0 : score < 0.8 ? 1 : 2;
  }
  const labels = task === 'binary' ? ['no', 'yes'] : task === 'multiclass' ? ['low', 'mid', 'high'] : null;
  return {
    featureNames: ['a', 'b', 'c'],
    features,
    targets,
    labels,
    rows,
    fingerprint: { sha256: '0'.repeat(64), rows },
  };
}

function options(task: TrainTask, extra: Partial<TrainerOptions> = {}): TrainerOptions {
  return {
    task,
    model: task === 'regression' ? { type: 'linear' } : { type: 'logistic' },
    epochs: 8,
    batchSize: 32,
    learningRate: 0.05,
    validationSplit: 0.25,
    seed: 42,
    ...extra,
  };
}

async function weightsOf(
  data: Dataset,
  opts: TrainerOptions,
): Promise<{ weights: Float32Array[]; onnxSha256: string }> {
  const trained = await trainModel(data, opts);
  try {
    const weights = trained.model.getWeights().map((w) => Float32Array.from(w.dataSync()));
    const onnxSha256 = createHash('sha256')
      .update(exportOnnx(trained.network, { producerVersion: 'test' }))
      .digest('hex');
    return { weights, onnxSha256 };
  } finally {
    trained.model.dispose();
  }
}

describe('trainModel', () => {
  it('gives bit-identical weights and ONNX bytes for the same seed and data, and others for another seed', async () => {
    const data = synthetic('multiclass', 240);
    const opts = options('multiclass', { model: { type: 'mlp', hiddenLayers: [8, 4] }, epochs: 3 });
    const first = await weightsOf(data, opts);
    const second = await weightsOf(data, opts);
    expect(second.weights.map((w) => Buffer.from(w.buffer))).toEqual(
      first.weights.map((w) => Buffer.from(w.buffer)),
    );
    expect(second.onnxSha256).toBe(first.onnxSha256);

    const other = await weightsOf(data, { ...opts, seed: 43 });
    expect(other.onnxSha256).not.toBe(first.onnxSha256);
  });

  it('streams regression metrics once per epoch and fits a linear target', async () => {
    const seen: TrainEpochMetrics[] = [];
    const trained = await trainModel(synthetic('regression', 300), {
      ...options('regression'),
      epochs: 30,
      learningRate: 0.1,
      onEpoch: (m) => void seen.push(m),
    });
    trained.model.dispose();
    expect(seen.map((m) => m.epoch)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    for (const m of seen) expect(Object.keys(m).sort()).toEqual(['epoch', 'loss', 'mae', 'rmse', 'valLoss']);
    expect(trained.metrics).toBe(seen[29]);
    // The target's noise is ±0.05: a fitted linear model gets close to it.
    expect(trained.metrics.rmse).toBeLessThan(0.2);
    expect(trained.metrics.valLoss).toBeCloseTo(trained.metrics.rmse! ** 2, 5);
    expect(seen[29].loss).toBeLessThan(seen[0].loss);
    expect({ train: trained.trainRows, validation: trained.validationRows }).toEqual({
      train: 225,
      validation: 75,
    });
  });

  it('streams accuracy and AUC for binary classification, and learns a separable problem', async () => {
    const seen: TrainEpochMetrics[] = [];
    const trained = await trainModel(synthetic('binary', 300), {
      ...options('binary'),
      epochs: 10,
      onEpoch: (m) => void seen.push(m),
    });
    trained.model.dispose();
    expect(seen).toHaveLength(10);
    for (const m of seen)
      expect(Object.keys(m).sort()).toEqual(['accuracy', 'auc', 'epoch', 'loss', 'valLoss']);
    expect(trained.metrics.accuracy).toBeGreaterThan(0.9);
    expect(trained.metrics.auc).toBeGreaterThan(0.95);
  });

  it('streams accuracy for multiclass; without a validation split valLoss is null', async () => {
    const seen: TrainEpochMetrics[] = [];
    const trained = await trainModel(synthetic('multiclass', 300), {
      ...options('multiclass', { model: { type: 'mlp', hiddenLayers: [16] } }),
      epochs: 15,
      validationSplit: 0,
      onEpoch: (m) => void seen.push(m),
    });
    trained.model.dispose();
    expect(seen).toHaveLength(15);
    for (const m of seen) {
      expect(Object.keys(m).sort()).toEqual(['accuracy', 'epoch', 'loss', 'valLoss']);
      expect(m.valLoss).toBeNull();
    }
    expect(trained.validationRows).toBe(0);
    expect(trained.metrics.accuracy).toBeGreaterThan(0.8);
  });

  it('bakes the standardisation in: the model takes raw features', async () => {
    const data = synthetic('regression', 200);
    const trained = await trainModel(data, { ...options('regression'), epochs: 30, learningRate: 0.1 });
    try {
      // Feature b is ~1000 ± 500: without standardisation inside the model these would be far off.
      const predictions = predictRows(trained.model, data, [0, 1, 2, 3]);
      for (let i = 0; i < 4; i++) expect(Math.abs(predictions[i] - data.targets[i])).toBeLessThan(0.5);
      const [stdKernel] = trained.model.getLayer('standardize').getWeights();
      expect(trained.model.getLayer('standardize').trainable).toBe(false);
      expect(stdKernel.shape).toEqual([3, 3]);
      expect(trained.network.standardization!.mean[1]).toBeGreaterThan(900);
    } finally {
      trained.model.dispose();
    }
  });

  it('stops between batches when the signal aborts, with the signal reason', async () => {
    const controller = new AbortController();
    let epochs = 0;
    const run = trainModel(synthetic('binary', 300), {
      ...options('binary'),
      epochs: 50,
      signal: controller.signal,
      onEpoch: () => {
        epochs++;
        controller.abort(new Error('cancelled by the control plane'));
      },
    });
    await expect(run).rejects.toThrow('cancelled by the control plane');
    expect(epochs).toBe(1);
  });

  it('refuses a dataset too small for its validation split', async () => {
    await expect(trainModel(synthetic('regression', 1), options('regression'))).rejects.toThrow(
      'the dataset has 1 row(s): too few to train on with a validation split of 0.25',
    );
  });
});

describe('splitRows', () => {
  it('splits repeatably by seed, disjoint and complete', () => {
    const a = splitRows(100, 0.2, 1);
    expect(splitRows(100, 0.2, 1)).toEqual(a);
    expect(a.validation).toHaveLength(20);
    expect([...a.train, ...a.validation].sort((x, y) => x - y)).toEqual(
      Array.from({ length: 100 }, (_, i) => i),
    );
    expect(splitRows(100, 0.2, 2).validation).not.toEqual(a.validation);
    expect(splitRows(3, 0.1, 1).validation).toHaveLength(1);
    expect(splitRows(3, 0, 1).validation).toHaveLength(0);
  });
});
