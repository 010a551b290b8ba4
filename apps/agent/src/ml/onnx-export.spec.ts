/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import onnx from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import type { ModelSpec, TrainTask } from '@hearth/contracts';
import { ensureBackend } from './backend.js';
import type { Dataset } from './dataset.js';
import { exportOnnx, ONNX_OPSET, type DenseActivation, type DenseNetwork } from './onnx-export.js';
import { SeededRandom } from './seeded-random.js';
import { predictRows, trainModel } from './trainer.js';

beforeAll(async () => {
  await ensureBackend();
});

async function runOnnx(bytes: Uint8Array, input: Float32Array, rows: number, width: number) {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'] });
  try {
    const out = await session.run({ input: new ort.Tensor('float32', input, [rows, width]) });
    return {
      names: [session.inputNames, session.outputNames],
      dims: out.output.dims,
      data: out.output.data as Float32Array,
    };
  } finally {
    await session.release();
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** float32 against a float64 reference: relative to the value's size (absolute below 1). */
function maxRelativeDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let max = 0;
  for (let i = 0; i < actual.length; i++) {
    max = Math.max(max, Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i])));
  }
  return max;
}

/** Plain-JS forward pass: what the exported graph must compute. */
function reference(network: DenseNetwork, input: Float32Array, rows: number): Float64Array {
  let width = network.featureCount;
  let x = Float64Array.from(input);
  const s = network.standardization;
  if (s) x = x.map((v, i) => (v - s.mean[i % width]) / s.std[i % width]);
  for (const layer of network.layers) {
    const y = new Float64Array(rows * layer.units);
    for (let r = 0; r < rows; r++) {
      for (let u = 0; u < layer.units; u++) {
        let sum = layer.bias[u];
        for (let k = 0; k < layer.inputs; k++) sum += x[r * width + k] * layer.kernel[k * layer.units + u];
        y[r * layer.units + u] = sum;
      }
      activate(layer.activation, y.subarray(r * layer.units, (r + 1) * layer.units));
    }
    x = y;
    width = layer.units;
  }
  if (network.outputScale) x = x.map((v) => v * network.outputScale!.scale + network.outputScale!.offset);
  return x;
}

function activate(activation: DenseActivation, row: Float64Array): void {
  if (activation === 'relu') row.forEach((v, i) => (row[i] = Math.max(0, v)));
  if (activation === 'tanh') row.forEach((v, i) => (row[i] = Math.tanh(v)));
  if (activation === 'sigmoid') row.forEach((v, i) => (row[i] = 1 / (1 + Math.exp(-v))));
  if (activation === 'softmax') {
    const max = Math.max(...row);
    const exp = row.map((v) => Math.exp(v - max));
    const total = exp.reduce((a, b) => a + b, 0);
    row.forEach((_, i) => (row[i] = exp[i] / total));
  }
}

function randomArray(random: SeededRandom, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (random.next() * 2 - 1) * scale);
}

function layer(random: SeededRandom, inputs: number, units: number, activation: DenseActivation) {
  return {
    inputs,
    units,
    kernel: randomArray(random, inputs * units),
    bias: randomArray(random, units),
    activation,
  };
}

describe('exportOnnx', () => {
  it('computes standardisation, every activation and the output scale as the reference does', async () => {
    const random = new SeededRandom(1);
    const network: DenseNetwork = {
      featureCount: 4,
      standardization: { mean: randomArray(random, 4, 10), std: Float32Array.of(0.5, 2, 3, 10) },
      layers: [
        layer(random, 4, 6, 'relu'),
        layer(random, 6, 5, 'tanh'),
        layer(random, 5, 5, 'sigmoid'),
        layer(random, 5, 3, 'linear'),
        layer(random, 3, 3, 'softmax'),
      ],
      outputScale: null,
    };
    const input = randomArray(random, 20 * 4, 20);
    const out = await runOnnx(exportOnnx(network, { producerVersion: 'test' }), input, 20, 4);
    expect(out.names).toEqual([['input'], ['output']]);
    expect(out.dims).toEqual([20, 3]);
    expect(maxRelativeDiff(out.data, reference(network, input, 20))).toBeLessThan(1e-5);

    const regression: DenseNetwork = {
      ...network,
      layers: [layer(random, 4, 1, 'linear')],
      outputScale: { scale: 3.5, offset: -2 },
    };
    const reg = await runOnnx(exportOnnx(regression, { producerVersion: 'test' }), input, 20, 4);
    expect(reg.dims).toEqual([20, 1]);
    expect(maxRelativeDiff(reg.data, reference(regression, input, 20))).toBeLessThan(1e-5);
  });

  it('writes opset 17, named and typed input/output, and the metadata given; the same network gives the same bytes', () => {
    const random = new SeededRandom(2);
    const network: DenseNetwork = {
      featureCount: 2,
      standardization: null,
      layers: [layer(random, 2, 1, 'sigmoid')],
      outputScale: null,
    };
    const options = { producerVersion: '1.2.3', metadata: { 'hearth.labels': '["no","yes"]' } };
    const bytes = exportOnnx(network, options);
    expect(Buffer.from(exportOnnx(network, options))).toEqual(Buffer.from(bytes));
    const model = onnx.onnx.ModelProto.decode(bytes);
    expect(model.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', ONNX_OPSET]]);
    expect(model.producerName).toBe('hearth-agent');
    expect(model.producerVersion).toBe('1.2.3');
    expect(model.metadataProps.map((p) => [p.key, p.value])).toEqual([['hearth.labels', '["no","yes"]']]);
    const graph = model.graph as onnx.onnx.GraphProto;
    const input = graph.input[0];
    expect(input.name).toBe('input');
    const type = input.type?.tensorType;
    expect(type?.elemType).toBe(onnx.onnx.TensorProto.DataType.FLOAT);
    expect(type?.shape?.dim?.map((d) => d.dimParam || Number(d.dimValue))).toEqual(['N', 2]);
    expect(graph.node.map((n) => n.opType)).toEqual(['Gemm', 'Sigmoid']);
  });

  it('refuses a network whose shapes do not chain', () => {
    const random = new SeededRandom(3);
    const network: DenseNetwork = {
      featureCount: 3,
      standardization: null,
      layers: [layer(random, 3, 4, 'relu'), layer(random, 5, 1, 'linear')],
      outputScale: null,
    };
    expect(() => exportOnnx(network, { producerVersion: 't' })).toThrow(
      'dense layer 1 takes 5 inputs, expected 4',
    );
  });
});

/** Rows of 4 features on mixed scales, from underlying values in [-spread, spread]. */
function featureRows(
  random: SeededRandom,
  rows: number,
  spread: number,
): { features: Float32Array; v: number[][] } {
  const features = new Float32Array(rows * 4);
  const v: number[][] = [];
  for (let r = 0; r < rows; r++) {
    const u = [0, 1, 2, 3].map(() => (random.next() * 2 - 1) * spread);
    features.set([u[0], 50 + 20 * u[1], u[2] / 100, -3 + u[3]], r * 4);
    v.push(u);
  }
  return { features, v };
}

/** 300 training rows; the target is a function of the underlying values. */
function synthetic(task: TrainTask): Dataset {
  const rows = 300;
  const { features, v } = featureRows(new SeededRandom(11), rows, 1);
  const targets = Float32Array.from(v, ([a, b, c, d]) => {
    const score = a - 2 * b + c * d;
    return task === 'regression'
      ? 2 * score + 1
      : task === 'binary'
        ? Number(score > 0)
        : score < -1
          ? 0
          : score < 1
            ? 1
            : 2;
  });
  const labels = task === 'regression' ? null : task === 'binary' ? ['0', '1'] : ['a', 'b', 'c'];
  return {
    featureNames: ['w', 'x', 'y', 'z'],
    features,
    targets,
    labels,
    rows,
    fingerprint: { sha256: '0'.repeat(64), rows },
  };
}

describe('ONNX Runtime agrees with TensorFlow.js on trained models', () => {
  const cases: [string, TrainTask, ModelSpec, number][] = [
    ['linear regression', 'regression', { type: 'linear' }, 1],
    ['binary logistic regression', 'binary', { type: 'logistic' }, 1],
    ['multiclass mlp', 'multiclass', { type: 'mlp', hiddenLayers: [16, 8] }, 3],
  ];
  it.each(cases)('%s: outputs within 1e-5', async (_name, task, model, units) => {
    const data = synthetic(task);
    const trained = await trainModel(data, {
      task,
      model,
      epochs: 5,
      batchSize: 32,
      learningRate: 0.05,
      validationSplit: 0.2,
      seed: 5,
    });
    try {
      // Rows the model saw, and new rows reaching past the training range.
      const fresh = featureRows(new SeededRandom(99), 50, 2).features;
      const probe: Dataset = {
        ...data,
        features: Float32Array.of(...data.features.subarray(0, 50 * 4), ...fresh),
        rows: 100,
      };
      const rows = Array.from({ length: 100 }, (_, i) => i);
      const tfjs = predictRows(trained.model, probe, rows);
      const out = await runOnnx(
        exportOnnx(trained.network, { producerVersion: 'test' }),
        probe.features,
        100,
        4,
      );
      expect(out.dims).toEqual([100, units]);
      expect(maxAbsDiff(out.data, tfjs)).toBeLessThan(1e-5);
      // Not a trivial agreement: the model's outputs vary.
      expect(Math.max(...tfjs) - Math.min(...tfjs)).toBeGreaterThan(0.1);
    } finally {
      trained.model.dispose();
    }
  });
});
