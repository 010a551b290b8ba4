/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import onnx from 'onnx-proto';
import { pino } from 'pino';
import { BatchPredictResult, type BatchPredictSpec } from '@hearth/contracts';
import { identityModel, linearRegressionModel, treeEnsembleClassifierModel } from '@hearth/testing';
import { parseLocalPolicy } from '../policy/local-policy.js';
import { onnxMetadata, type VerifiedModel } from '../serve/model-file.js';
import { loadModelSession } from '../serve/model-session.js';
import { batchPredict, float32Json, type BatchPredictContext } from './batch-predict.js';
import { DatasetError } from './dataset.js';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-batch-predict-')));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const dataRoot = path.join(tmp, 'data');
const artifactRoot = path.join(tmp, 'artifacts');
fs.mkdirSync(dataRoot);
const policy = parseLocalPolicy({ dataRoots: [dataRoot], artifactRoot }, '/etc/hearth/policy.json');
const sha256 = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

function verified(bytes: Uint8Array, metadata: Record<string, string> = {}): VerifiedModel {
  const model = onnx.onnx.ModelProto.decode(bytes);
  model.metadataProps = Object.entries(metadata).map(([key, value]) => ({ key, value }));
  const withMetadata = onnx.onnx.ModelProto.encode(model).finish();
  return {
    bytes: withMetadata,
    sha256: sha256(withMetadata),
    metadata: onnxMetadata(withMetadata, 'file:///m.onnx'),
  };
}

function input(name: string, content: string): string {
  const file = path.join(dataRoot, name);
  fs.writeFileSync(file, content);
  return file;
}

function spec(inputPath: string, extra: Partial<BatchPredictSpec> = {}): BatchPredictSpec {
  return {
    model: { name: 'm', version: '1', uri: 'file:///m.onnx', sha256: 'a'.repeat(64) },
    input: { uri: pathToFileURL(inputPath).href },
    ...extra,
  };
}

function context(
  model: VerifiedModel,
  inputPath: string,
  extra: Partial<BatchPredictContext> = {},
): BatchPredictContext {
  return {
    policy,
    jobId: randomUUID(),
    attemptId: randomUUID(),
    model,
    inputPath,
    signal: new AbortController().signal,
    logger: pino({ level: 'silent' }),
    ...extra,
  };
}

const lines = (result: BatchPredictResult) =>
  fs
    .readFileSync(fileURLToPath(result.output.uri), 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as unknown);

describe('batchPredict', () => {
  // y = 2a - b + c/2 + 1
  const rows = 'a,b,c\n1,2,4\n0,0,0\n-1,1,2\n';

  it('writes one JSON line per row, in order, and reports only counts, timing and hashes', async () => {
    const file = input('score.csv', rows);
    const ctx = context(verified(linearRegressionModel()), file, { batchRows: 2 });
    const result = await batchPredict(spec(file), ctx);
    expect(BatchPredictResult.safeParse(result).success).toBe(true);
    expect(lines(result)).toEqual([{ variable: [3] }, { variable: [1] }, { variable: [-1] }]);
    const outPath = path.join(artifactRoot, ctx.jobId, ctx.attemptId, 'predictions.jsonl');
    const written = fs.readFileSync(outPath);
    expect(result).toEqual({
      rows: 3,
      durationMs: expect.any(Number),
      input: { sha256: sha256(rows), rows: 3 },
      output: {
        uri: pathToFileURL(outPath).href,
        sha256: sha256(written),
        sizeBytes: written.length,
        format: 'jsonl',
      },
    });
  });

  it("feeds the model's recorded feature names, else the named features, else the numeric columns", async () => {
    const file = input('shuffled.csv', 'note,c,a,b\nx,4,1,2\ny,0,0,0\n');
    const recorded = verified(linearRegressionModel(), { 'hearth.featureNames': '["a","b","c"]' });
    expect(lines(await batchPredict(spec(file), context(recorded, file)))).toEqual([
      { variable: [3] },
      { variable: [1] },
    ]);
    const plain = verified(linearRegressionModel());
    const named = await batchPredict(spec(file, { features: ['a', 'b', 'c'] }), context(plain, file));
    expect(lines(named)).toEqual([{ variable: [3] }, { variable: [1] }]);
    // Numeric columns in file order: c, a, b → 2c - a + b/2 + 1 = 8 - 1 + 1 + 1.
    expect(lines(await batchPredict(spec(file), context(plain, file)))).toEqual([
      { variable: [9] },
      { variable: [1] },
    ]);
  });

  it('writes scalar outputs as values and wider ones as arrays (a tree classifier)', async () => {
    const file = input('trees.csv', 'x0,x1\n0,5\n2,3\n');
    const result = await batchPredict(spec(file), context(verified(treeEnsembleClassifierModel()), file));
    expect(lines(result)).toEqual([
      { label: 10, probabilities: [0.6, 0.4, 0] },
      { label: 20, probabilities: [0.2, 0.425, 0.375] },
    ]);
  });

  it('refuses a dataset whose width is not the model input width, naming the columns locally only', async () => {
    const file = input('narrow.csv', 'a,b\n1,2\n');
    await expect(batchPredict(spec(file), context(verified(linearRegressionModel()), file))).rejects.toThrow(
      new DatasetError(
        'the model takes 3 features per row, but 2 columns were chosen (every column of the file): ' +
          `name the model's 3 input columns, in order, with "features"`,
      ),
    );
  });

  it("refuses a model it cannot feed without quoting the model's names, which only the local log gets", async () => {
    const file = input('two.csv', rows);
    const twoInputs = identityModel([
      { name: 'ssn_123_45_6789', type: 'float32', shape: ['n', 3] },
      { name: 'other', type: 'float32', shape: ['n', 3] },
    ]);
    const err = await batchPredict(spec(file), context(verified(twoInputs), file)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect(err).toMatchObject({
      message: 'the model has 2 inputs; batch_predict feeds models with one [rows, features] input',
      localDetail: 'the model\'s inputs are "ssn_123_45_6789", "other"',
    });
  });

  it('stops between batches when aborted, and leaves no partial output', async () => {
    const file = input('many.csv', rows);
    const controller = new AbortController();
    const ctx = context(verified(linearRegressionModel()), file, {
      batchRows: 1,
      signal: controller.signal,
      loadSession: async (bytes) => {
        const session = await loadModelSession(bytes);
        return {
          ...session,
          run: async (feeds, names) => {
            controller.abort(new Error('cancelled by the control plane'));
            return session.run(feeds, names);
          },
        };
      },
    });
    await expect(batchPredict(spec(file), ctx)).rejects.toThrow('cancelled by the control plane');
    expect(fs.existsSync(path.join(artifactRoot, ctx.jobId))).toBe(false);
  });
});

describe('float32Json', () => {
  it('writes the shortest decimal that reads back as the same float32', () => {
    expect(float32Json(Math.fround(0.93))).toBe('0.93');
    expect(float32Json(Math.fround(1 / 3))).toBe('0.33333334');
    expect(float32Json(3)).toBe('3');
    expect(float32Json(Math.fround(1e-7))).toBe('1e-7');
    expect(float32Json(Number.NaN)).toBe('null');
  });
});
