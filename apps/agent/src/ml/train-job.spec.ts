/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as ort from 'onnxruntime-node';
import { pino } from 'pino';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  TrainResult,
  type TrainBackend,
  type TrainEpochMetrics,
  type TrainSpecInput,
} from '@hearth/contracts';
import { PolicyError, parseLocalPolicy, type LocalPolicy } from '../policy/local-policy.js';
import { SeededRandom } from './seeded-random.js';
import { DatasetError } from './dataset.js';
import { TrainError } from './trainer.js';
import { train, type TrainJobContext } from './train-job.js';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-train-job-')));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const dataRoot = path.join(tmp, 'data');
const artifactRoot = path.join(tmp, 'artifacts');
fs.mkdirSync(dataRoot);
const policy: LocalPolicy = parseLocalPolicy(
  { dataRoots: [dataRoot], artifactRoot, maxDatasetBytes: 64 * 1024 },
  '/etc/hearth/policy.json',
);

/** A churn-like CSV: two numeric features, a yes/no label. 987654.321 marks the data in the output. */
function churnCsv(rows: number): string {
  const random = new SeededRandom(3);
  const lines = ['tenure,monthly_spend,churned'];
  for (let i = 0; i < rows; i++) {
    const tenure = Math.round(random.next() * 60);
    const spend = i === 0 ? 987654.321 : Math.round(20 + random.next() * 100);
    lines.push(`${tenure},${spend},${tenure < 20 && spend > 50 ? 'yes' : 'no'}`);
  }
  return lines.join('\n') + '\n';
}

function dataset(name: string, content: string): string {
  const file = path.join(dataRoot, name);
  fs.writeFileSync(file, content);
  return pathToFileURL(file).href;
}

const churnUri = dataset('churn.csv', churnCsv(200));

function spec(extra: Partial<TrainSpecInput> = {}): TrainSpecInput {
  return {
    dataset: { uri: churnUri },
    target: 'churned',
    task: 'binary',
    model: { type: 'mlp', hiddenLayers: [8] },
    epochs: 3,
    learningRate: 0.05,
    seed: 1,
    ...extra,
  };
}

function context(
  extra: Partial<TrainJobContext> = {},
): TrainJobContext & { epochs: TrainEpochMetrics[]; backends: TrainBackend[] } {
  const epochs: TrainEpochMetrics[] = [];
  const backends: TrainBackend[] = [];
  return {
    policy,
    jobId: randomUUID(),
    attemptId: randomUUID(),
    signal: new AbortController().signal,
    logger: pino({ level: 'silent' }),
    onEpoch: (m) => void epochs.push(m),
    onBackend: (b) => void backends.push(b),
    epochs,
    backends,
    ...extra,
  };
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

describe('train', () => {
  it('trains, saves ONNX and TF.js models to the artifact store, and returns only metadata', async () => {
    const ctx = context();
    const result = await train(spec(), ctx);

    expect(TrainResult.safeParse(result).success).toBe(true);
    expect(result.backend).toBe('wasm');
    expect(ctx.backends).toEqual(['wasm']);
    expect(ctx.epochs.map((m) => m.epoch)).toEqual([1, 2, 3]);
    expect(result.metrics).toEqual(ctx.epochs[2]);
    expect(result.featureNames).toEqual(['tenure', 'monthly_spend']);
    expect(result.labels).toEqual(['no', 'yes']);
    expect(result.datasetFingerprint).toEqual({ sha256: sha256(fileURLToPath(churnUri)), rows: 200 });
    expect(JSON.stringify(result)).not.toContain('987654');

    const attemptDir = path.join(artifactRoot, ctx.jobId, ctx.attemptId);
    expect(result.artifacts.map((a) => [a.format, fileURLToPath(a.uri)])).toEqual([
      ['onnx', path.join(attemptDir, 'model.onnx')],
      ['tfjs', path.join(attemptDir, 'tfjs', 'model.json')],
    ]);
    const [onnxArtifact, tfjsArtifact] = result.artifacts;
    expect(onnxArtifact.sha256).toBe(sha256(fileURLToPath(onnxArtifact.uri)));
    expect(onnxArtifact.sizeBytes).toBe(fs.statSync(fileURLToPath(onnxArtifact.uri)).size);
    expect(tfjsArtifact.sha256).toBe(sha256(fileURLToPath(tfjsArtifact.uri)));
    expect(onnxArtifact.signature).toEqual({
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 1] }],
    });

    // The two saved models give the same answers on raw features.
    const json = JSON.parse(
      fs.readFileSync(path.join(attemptDir, 'tfjs', 'model.json'), 'utf8'),
    ) as tf.io.ModelJSON;
    expect(json.userDefinedMetadata).toMatchObject({ hearth: { task: 'binary', labels: ['no', 'yes'] } });
    const weights = fs.readFileSync(path.join(attemptDir, 'tfjs', 'weights.bin'));
    const model = await tfl.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json.modelTopology,
        weightSpecs: json.weightsManifest[0].weights,
        weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
      }),
    );
    const input = Float32Array.of(5, 90, 40, 30, 12, 60);
    const expected = await (model.predict(tf.tensor2d(input, [3, 2])) as tf.Tensor).data();
    const session = await ort.InferenceSession.create(fs.readFileSync(fileURLToPath(onnxArtifact.uri)), {
      executionProviders: ['cpu'],
    });
    const out = await session.run({ input: new ort.Tensor('float32', input, [3, 2]) });
    await session.release();
    const actual = out.output.data as Float32Array;
    for (let i = 0; i < 3; i++) expect(Math.abs(actual[i] - expected[i])).toBeLessThan(1e-5);
    expect(session.inputNames).toEqual(['input']);
  });

  it('gives the same artifacts for the same seed and data', async () => {
    const regression = spec({
      task: 'regression',
      target: 'tenure',
      features: ['monthly_spend'],
      model: { type: 'linear' },
    });
    const first = await train(regression, context());
    const second = await train(regression, context());
    expect(second.artifacts.map((a) => a.sha256)).toEqual(first.artifacts.map((a) => a.sha256));
    expect(Object.keys(second.metrics).sort()).toEqual(['epoch', 'loss', 'mae', 'rmse', 'valLoss']);
  });

  describe('bad input: a clear error, nothing left behind, and the next job still runs', () => {
    const cases: [
      string,
      () => Partial<TrainSpecInput>,
      LocalPolicy | null,
      new (message: string) => Error,
      string | RegExp,
    ][] = [
      [
        'a missing target column',
        () => ({ target: 'churn' }),
        null,
        DatasetError,
        /^the target column "churn" is not in the dataset's header \(line 1, 3 columns; the agent's log lists them\)/,
      ],
      [
        'non-numeric values',
        () => ({
          dataset: { uri: dataset('text.csv', 'tenure,monthly_spend,churned\n1,2,no\nn/a,3,yes\n') },
        }),
        null,
        DatasetError,
        'line 3, column 1: the value is not a number (features must be numeric)',
      ],
      [
        'an empty file',
        () => ({ dataset: { uri: dataset('empty.csv', '') } }),
        null,
        DatasetError,
        'the dataset file is empty',
      ],
      [
        'ragged rows',
        () => ({ dataset: { uri: dataset('ragged.csv', 'tenure,monthly_spend,churned\n1,2,no\n3,yes\n') } }),
        null,
        DatasetError,
        'line 3 has 2 fields but the header has 3 (ragged rows)',
      ],
      [
        'a path outside the roots through ..',
        () => ({ dataset: { uri: `file://${dataRoot}/../outside.csv` } }),
        null,
        PolicyError,
        /is outside the data roots allowed on this agent/,
      ],
      [
        'a symbolic link out of the roots',
        () => {
          const target = path.join(tmp, 'elsewhere.csv');
          fs.writeFileSync(target, churnCsv(10));
          fs.symlinkSync(target, path.join(dataRoot, 'sneaky.csv'));
          return { dataset: { uri: pathToFileURL(path.join(dataRoot, 'sneaky.csv')).href } };
        },
        null,
        PolicyError,
        /is a symbolic link \(or under one\) that leads outside the data roots/,
      ],
      [
        'an unsupported scheme',
        () => ({ dataset: { uri: 's3://bucket/churn.csv' } }),
        null,
        PolicyError,
        /^unsupported dataset URI scheme "s3"/,
      ],
      [
        'a dataset over the configured limit',
        () => ({}),
        parseLocalPolicy(
          { dataRoots: [dataRoot], artifactRoot, maxDatasetBytes: 100 },
          '/etc/hearth/policy.json',
        ),
        DatasetError,
        /^the dataset is \d+ bytes, over this agent's limit of 100 bytes/,
      ],
      [
        'no data roots (no policy file)',
        () => ({}),
        parseLocalPolicy({}, '/var/lib/hearth/policy.json'),
        PolicyError,
        /^no data roots are configured/,
      ],
      [
        'no artifact root',
        () => ({}),
        parseLocalPolicy({ dataRoots: [dataRoot] }, '/etc/hearth/policy.json'),
        PolicyError,
        /^no artifact root is configured/,
      ],
      ['an invalid spec', () => ({ epochs: 0 }), null, TrainError, /^invalid train job: epochs: /],
      [
        'a logistic model for regression',
        () => ({ task: 'regression', model: { type: 'logistic' } }),
        null,
        TrainError,
        /a logistic model needs a binary or multiclass task/,
      ],
    ];

    it.each(cases)('%s', async (_name, change, otherPolicy, errorClass, message) => {
      const ctx = context(otherPolicy ? { policy: otherPolicy } : {});
      const error = await train(spec(change()), ctx).then(
        () => null,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(errorClass);
      expect((error as Error).message).toMatch(message);
      expect(ctx.epochs).toEqual([]);
      expect(fs.existsSync(path.join(artifactRoot, ctx.jobId))).toBe(false);
    });

    it('stops when cancelled, and removes what it wrote', async () => {
      const controller = new AbortController();
      const ctx = context({
        signal: controller.signal,
        onEpoch: () => controller.abort(new Error('cancelled by the control plane')),
      });
      await expect(train(spec({ epochs: 50 }), ctx)).rejects.toThrow('cancelled by the control plane');
      expect(fs.existsSync(path.join(artifactRoot, ctx.jobId))).toBe(false);

      // The agent carries on: the next job trains fine.
      const next = await train(spec({ epochs: 1 }), context());
      expect(next.metrics.epoch).toBe(1);
    });
  });
});
