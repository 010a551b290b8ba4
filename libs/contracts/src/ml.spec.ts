import { describe, expect, it } from '@jest/globals';
import { decode, encode, MAX_MESSAGE_BYTES } from './messages.js';
import {
  fileUriProblem,
  ModelArtifact,
  TRAIN_LIMITS,
  TrainEpochMetrics,
  TrainResult,
  trainResultProblem,
  TrainSpec,
} from './ml.js';
import { BatchPredictResult, batchPredictResultProblem } from './serving.js';

const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const sha = 'a'.repeat(64);

const artifact: ModelArtifact = {
  uri: 'file:///srv/models/job/attempt/model.onnx',
  sha256: sha,
  sizeBytes: 1234,
  format: 'onnx',
  signature: {
    inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 3] }],
    outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 1] }],
  },
};

const result: TrainResult = {
  backend: 'wasm',
  datasetFingerprint: { sha256: sha, rows: 200 },
  metrics: { epoch: 3, loss: 0.4, valLoss: 0.5, accuracy: 0.8, auc: 0.9 },
  artifacts: [
    artifact,
    { ...artifact, format: 'tfjs', uri: 'file:///srv/models/job/attempt/tfjs/model.json' },
  ],
  featureNames: ['tenure', 'monthly_spend', 'age'],
  labels: ['no', 'yes'],
};

describe('TrainSpec', () => {
  it('fills in the training defaults', () => {
    const spec = TrainSpec.parse({
      dataset: { uri: 'file:///data/churn.csv' },
      target: 'churned',
      task: 'binary',
      model: { type: 'logistic' },
    });
    expect(spec).toEqual({
      dataset: { uri: 'file:///data/churn.csv' },
      target: 'churned',
      task: 'binary',
      model: { type: 'logistic' },
      epochs: 20,
      batchSize: 32,
      learningRate: 0.01,
      validationSplit: 0.2,
      seed: 0,
    });
  });

  it('accepts any URI scheme (the agent decides what it can read) but not a bare path', () => {
    const base = { target: 'y', task: 'regression', model: { type: 'linear' } };
    expect(TrainSpec.safeParse({ ...base, dataset: { uri: 's3://bucket/key.csv' } }).success).toBe(true);
    expect(TrainSpec.safeParse({ ...base, dataset: { uri: '/data/x.csv' } }).success).toBe(false);
    expect(
      TrainSpec.safeParse({ ...base, dataset: { uri: `file:///${'x'.repeat(TRAIN_LIMITS.maxUriChars)}` } })
        .success,
    ).toBe(false);
  });

  it('rejects models that do not fit the task, bad bounds and unknown fields', () => {
    const base = { dataset: { uri: 'file:///d.csv' }, target: 'y' };
    const issues = (v: object) => {
      const parsed = TrainSpec.safeParse({ ...base, ...v });
      return parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(issues({ task: 'regression', model: { type: 'logistic' } })).toEqual([
      'model: a logistic model needs a binary or multiclass task',
    ]);
    expect(issues({ task: 'binary', model: { type: 'linear' } })).toEqual([
      'model: a linear model is for regression; use logistic for classification',
    ]);
    expect(issues({ task: 'binary', model: { type: 'logistic' }, features: ['a', 'y'] })).toEqual([
      'features: the target column cannot also be a feature',
    ]);
    expect(issues({ task: 'binary', model: { type: 'logistic' }, features: ['a', 'b', 'a'] })).toEqual([
      'features: names a column more than once',
    ]);
    expect(issues({ task: 'binary', model: { type: 'mlp', hiddenLayers: [] } })).toHaveLength(1);
    expect(issues({ task: 'binary', model: { type: 'mlp', hiddenLayers: [4], dropout: 0.5 } })).toHaveLength(
      1,
    );
    expect(issues({ task: 'binary', model: { type: 'logistic' }, validationSplit: 0.9 })).toHaveLength(1);
    expect(issues({ task: 'binary', model: { type: 'logistic' }, epochs: 1.5 })).toHaveLength(1);
    expect(issues({ task: 'binary', model: { type: 'logistic' }, rows: [[1, 2]] })).toHaveLength(1);
  });
});

describe('TrainResult', () => {
  it('round-trips through the wire codec', () => {
    expect(decode(TrainResult, encode(TrainResult, result))).toEqual({ ok: true, value: result });
  });

  it('has no room for dataset rows: unknown fields are rejected at every level', () => {
    expect(decode(TrainResult, bytes({ ...result, sample: [[1, 2, 3]] })).ok).toBe(false);
    expect(
      decode(TrainResult, bytes({ ...result, metrics: { ...result.metrics, predictions: [0.1] } })).ok,
    ).toBe(false);
    expect(
      decode(TrainResult, bytes({ ...result, datasetFingerprint: { sha256: sha, rows: 2, head: 'a,b' } })).ok,
    ).toBe(false);
    expect(ModelArtifact.safeParse({ ...artifact, preview: 'x' }).success).toBe(false);
  });

  it('bounds strings and lists, so the largest result still fits in one message', () => {
    expect(
      TrainResult.safeParse({ ...result, featureNames: ['x'.repeat(TRAIN_LIMITS.maxColumnNameChars + 1)] })
        .success,
    ).toBe(false);
    expect(
      TrainResult.safeParse({ ...result, labels: ['y'.repeat(TRAIN_LIMITS.maxLabelChars + 1), 'n'] }).success,
    ).toBe(false);
    expect(ModelArtifact.safeParse({ ...artifact, uri: 's3://b/k' }).success).toBe(false);
    expect(ModelArtifact.safeParse({ ...artifact, sha256: 'A'.repeat(64) }).success).toBe(false);
    const largest = {
      ...result,
      featureNames: Array.from({ length: TRAIN_LIMITS.maxFeatures }, (_, i) =>
        `${i}`.padEnd(TRAIN_LIMITS.maxColumnNameChars, 'f'),
      ),
      labels: Array.from({ length: TRAIN_LIMITS.maxClasses }, (_, i) =>
        `${i}`.padEnd(TRAIN_LIMITS.maxLabelChars, 'l'),
      ),
      artifacts: Array.from({ length: 4 }, () => ({
        ...artifact,
        uri: `file:///${'u'.repeat(TRAIN_LIMITS.maxUriChars - 8)}`,
      })),
    };
    expect(encode(TrainResult, largest).byteLength).toBeLessThan(MAX_MESSAGE_BYTES);
  });
});

describe('TrainEpochMetrics', () => {
  it('takes finite numbers only: a diverged loss cannot be sent', () => {
    expect(
      TrainEpochMetrics.safeParse({ epoch: 1, loss: 0.3, valLoss: null, rmse: 1, mae: 0.5 }).success,
    ).toBe(true);
    expect(TrainEpochMetrics.safeParse({ epoch: 1, loss: Number.NaN, valLoss: null }).success).toBe(false);
    expect(TrainEpochMetrics.safeParse({ epoch: 1, loss: Infinity, valLoss: null }).success).toBe(false);
    expect(TrainEpochMetrics.safeParse({ epoch: 0, loss: 1, valLoss: null }).success).toBe(false);
    expect(TrainEpochMetrics.safeParse({ epoch: 1, loss: 1, valLoss: null, accuracy: 1.5 }).success).toBe(
      false,
    );
  });
});

describe('fileUriProblem', () => {
  it('accepts what pathToFileURL writes', () => {
    for (const uri of [
      'file:///srv/models/job/attempt/model.onnx',
      'file:///srv/models/with%20space/%25percent/model.onnx',
      'file:///srv/models/caf%C3%A9.onnx',
    ])
      expect([uri, fileUriProblem(uri)]).toEqual([uri, null]);
  });

  it('refuses a URI that names one file as stored and another as resolved', () => {
    for (const uri of [
      'file:///../../etc/shadow',
      'file:///srv/models/../../etc/shadow',
      'file:///srv/models/%2e%2e/%2E%2E/etc/shadow',
      'file:///srv/models/./model.onnx',
      'file:///srv/models/a%2Fb.onnx',
      'file:///srv/models/model.onnx?x=1',
      'file:///srv/models/model.onnx#frag',
    ])
      expect([uri, fileUriProblem(uri)]).toEqual([uri, expect.stringMatching(/normalized/)]);
    for (const uri of ['file://localhost/srv/m.onnx', 'file://evil.example/srv/m.onnx', 'file://srv/m.onnx'])
      expect([uri, fileUriProblem(uri)]).toEqual([uri, expect.stringMatching(/local file/)]);
    expect(fileUriProblem('s3://bucket/m.onnx')).toMatch(/file:\/\//);
    expect(ModelArtifact.safeParse({ ...artifact, uri: 'file:///../../etc/shadow' }).success).toBe(false);
  });
});

describe("trainResultProblem: an agent's result checked against its job", () => {
  const spec = TrainSpec.parse({
    dataset: { uri: 'file:///srv/data/churn.csv' },
    target: 'churned',
    features: ['tenure', 'monthly_spend', 'age'],
    task: 'binary',
    model: { type: 'logistic' },
    epochs: 3,
  });
  const regression = TrainSpec.parse({ ...spec, task: 'regression', model: { type: 'linear' } });
  const multiclass = TrainSpec.parse({ ...spec, task: 'multiclass' });
  const withOutputs = (units: number) =>
    result.artifacts.map((a) => ({
      ...a,
      signature: { ...a.signature, outputs: [{ ...a.signature.outputs[0], shape: [-1, units] }] },
    }));

  it('accepts what the trainer produces, for each task', () => {
    expect(trainResultProblem(spec, result, 'wasm')).toBeNull();
    expect(trainResultProblem(spec, result)).toBeNull();
    const reg = { epoch: 3, loss: 0.2, valLoss: 0.3, rmse: 0.4, mae: 0.3 };
    expect(trainResultProblem(regression, { ...result, metrics: reg, labels: undefined })).toBeNull();
    expect(
      trainResultProblem(multiclass, {
        ...result,
        metrics: { epoch: 3, loss: 0.2, valLoss: 0.3, accuracy: 0.9 },
        labels: ['a', 'b', 'c'],
        artifacts: withOutputs(3),
      }),
    ).toBeNull();
    const allColumns = TrainSpec.parse({ ...spec, features: undefined });
    expect(trainResultProblem(allColumns, result)).toBeNull();
  });

  it('refuses features, labels and metrics that contradict the job', () => {
    const refused: [Partial<TrainResult>, RegExp][] = [
      [{ featureNames: ['ssn', 'ssn', 'salary'] }, /more than once/],
      [{ featureNames: ['ssn', 'salary', 'age'] }, /not the job's features/],
      [{ featureNames: ['tenure', 'age', 'monthly_spend'] }, /not the job's features/],
      [{ labels: undefined }, /needs labels/],
      [{ labels: ['a', 'b', 'c'] }, /2 labels, not 3/],
      [{ labels: ['a', 'a'] }, /more than once/],
      [{ metrics: { ...result.metrics, epoch: 1000 } }, /epoch 1000; the job ran 3/],
      [{ metrics: { ...result.metrics, loss: -1e308 } }, /negative/],
      [{ metrics: { ...result.metrics, valLoss: -1 } }, /negative/],
      [
        { metrics: { ...result.metrics, rmse: 0 } },
        /reports accuracy and auc, not accuracy and auc and rmse/,
      ],
      [{ metrics: { epoch: 3, loss: 1, valLoss: 1 } }, /not nothing/],
      [{ datasetFingerprint: { sha256: sha, rows: 0 } }, /no rows/],
      [{ artifacts: [artifact, artifact] }, /more than one artifact/],
      [{ artifacts: [result.artifacts[1]] }, /no ONNX/],
      [{ artifacts: withOutputs(2) }, /output is not \[-1, 1\]/],
      [
        {
          artifacts: [
            {
              ...artifact,
              signature: {
                ...artifact.signature,
                inputs: [{ ...artifact.signature.inputs[0], shape: [-1, 2] }],
              },
            },
          ],
        },
        /input is not \[-1, 3\]/,
      ],
    ];
    for (const [patch, reason] of refused)
      expect([patch, trainResultProblem(spec, { ...result, ...patch })]).toEqual([
        patch,
        expect.stringMatching(reason),
      ]);
    expect(
      trainResultProblem(regression, {
        ...result,
        metrics: { epoch: 3, loss: 1, valLoss: 1, rmse: 1, mae: 1 },
      }),
    ).toMatch(/regression model has no labels/);
    expect(
      trainResultProblem(TrainSpec.parse({ ...spec, features: undefined }), {
        ...result,
        featureNames: ['churned'],
      }),
    ).toMatch(/target column/);
    expect(trainResultProblem(TrainSpec.parse({ ...spec, validationSplit: 0 }), result)).toMatch(
      /validation loss/,
    );
  });

  it('refuses a backend other than the one the attempt reported', () => {
    expect(trainResultProblem(spec, result, 'tfjs-node-gpu')).toMatch(
      /trained on wasm, but the job reported tfjs-node-gpu/,
    );
  });
});

describe('batchPredictResultProblem', () => {
  const ok: BatchPredictResult = {
    rows: 10,
    durationMs: 5,
    input: { sha256: sha, rows: 10 },
    output: { uri: 'file:///srv/out/predictions.jsonl', sha256: sha, sizeBytes: 100, format: 'jsonl' },
  };
  it('wants one prediction per input row, written to a normalized file URI', () => {
    expect(batchPredictResultProblem(ok)).toBeNull();
    expect(batchPredictResultProblem({ ...ok, rows: 11 })).toMatch(/11 predictions for 10 input rows/);
    expect(
      BatchPredictResult.safeParse({ ...ok, output: { ...ok.output, uri: 'file:///srv/../etc/x' } }).success,
    ).toBe(false);
  });
});
