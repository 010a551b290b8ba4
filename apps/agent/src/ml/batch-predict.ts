/**
 * The `batch_predict` job from verified model and dataset to result: load the ONNX model, read the
 * rows' features, run them through the model in batches, and write one JSON line per input row,
 * in input order, to `<artifactRoot>/<jobId>/<attemptId>/predictions.jsonl`:
 *
 *   {"<output name>": <value>, …}   a scalar for an output of shape [rows], else the row's
 *                                   values as a flat array (e.g. the class probabilities)
 *
 * Which columns feed the model: spec.features when given; else the feature names Hearth's trainer
 * recorded in the model (hearth.featureNames); else every numeric column, in file order. Only the
 * counts, the timing and the hashes are returned (and leave the agent), never a row or a prediction.
 * Cancellation is checked between batches; a failed or stopped run removes its partial output.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import ort from 'onnxruntime-node';
import type { Tensor } from 'onnxruntime-node';
import type { BatchPredictResult, BatchPredictSpec } from '@hearth/contracts';
import { removeAttemptDir } from '../attempt-dir.js';
import type { Logger } from '../logger.js';
import { artifactPathFor, type LocalPolicy } from '../policy/local-policy.js';
import { recordedFeatureNames, type VerifiedModel } from '../serve/model-file.js';
import { loadModelSession, type ModelSession, type TensorSpec } from '../serve/model-session.js';
import { halfToFloat } from '../serve/oip-codec.js';
import { DatasetError, listColumns } from './dataset.js';
import type { FeatureTable } from './feature-table.js';
import { loadFeatureTableOffThread } from './table-loader.js';

export const PREDICTIONS_FILE = 'predictions.jsonl';
const DEFAULT_BATCH_ROWS = 1024;

export interface BatchPredictContext {
  policy: LocalPolicy;
  jobId: string;
  attemptId: string;
  /** The model, read and checked against the job's sha256. */
  model: VerifiedModel;
  /** The input dataset's path, resolved inside a data root. */
  inputPath: string;
  signal: AbortSignal;
  logger: Logger;
  batchRows?: number;
  /** Default loadModelSession. */
  loadSession?: (bytes: Uint8Array) => Promise<ModelSession>;
}

export async function batchPredict(
  spec: BatchPredictSpec,
  ctx: BatchPredictContext,
): Promise<BatchPredictResult> {
  const started = performance.now();
  ctx.signal.throwIfAborted();
  const session = await (ctx.loadSession ?? ((bytes: Uint8Array) => loadModelSession(bytes)))(
    ctx.model.bytes,
  );
  let outPath: string | null = null;
  try {
    const input = modelInput(session);
    const features = spec.features ?? recordedFeatureNames(ctx.model.metadata) ?? undefined;
    const table = await loadFeatureTableOffThread(
      ctx.inputPath,
      { features, format: spec.input.format, maxBytes: ctx.policy.maxDatasetBytes },
      { signal: ctx.signal },
    );
    checkWidth(input, table, spec.features !== undefined);
    ctx.logger.info(
      { rows: table.rows, features: table.featureNames.length, sha256: table.fingerprint.sha256 },
      'batch input loaded',
    );
    outPath = artifactPathFor(ctx.policy, ctx.jobId, ctx.attemptId, PREDICTIONS_FILE);
    const output = await writePredictions(outPath, session, input, table, ctx);
    const result: BatchPredictResult = {
      rows: table.rows,
      durationMs: Math.round(performance.now() - started),
      input: table.fingerprint,
      output: { uri: pathToFileURL(outPath).href, ...output, format: 'jsonl' },
    };
    ctx.logger.info(
      { rows: result.rows, durationMs: result.durationMs, output: result.output.uri },
      'predictions written',
    );
    return result;
  } catch (err) {
    if (outPath !== null) await removeAttemptDir(path.dirname(outPath)).catch(() => undefined);
    throw err;
  } finally {
    await session.release();
  }
}

/**
 * The model's one input, a float matrix [rows, features]. The reasons name no input: a model's
 * names are whatever its author wrote, and a reason leaves the machine (ML-jobs audit, finding 8).
 */
function modelInput(session: ModelSession): TensorSpec {
  const names = `the model's inputs are ${session.inputs.map((i) => JSON.stringify(i.name)).join(', ')}`;
  if (session.inputs.length !== 1) {
    throw new DatasetError(
      `the model has ${session.inputs.length} inputs; batch_predict feeds models with one [rows, features] input`,
      names,
    );
  }
  const [input] = session.inputs;
  if (input.datatype !== 'FP32' && input.datatype !== 'FP64') {
    throw new DatasetError(
      `the model's input is ${input.datatype}; batch_predict feeds FP32 or FP64 features`,
      names,
    );
  }
  if (input.shape.length !== 2) {
    throw new DatasetError(
      `the model's input has ${input.shape.length} dimensions; batch_predict feeds [rows, features]`,
      names,
    );
  }
  return input;
}

function checkWidth(input: TensorSpec, table: FeatureTable, named: boolean): void {
  const width = input.shape[1];
  if (width === -1 || width === table.featureNames.length) return;
  // The chosen names stay in the local log: without "features" they are the file's first line.
  throw new DatasetError(
    `the model takes ${width} features per row, but ${table.featureNames.length} columns were ` +
      `${named ? 'named in "features"' : 'chosen (every column of the file)'}` +
      (named ? '' : `: name the model's ${width} input columns, in order, with "features"`),
    `the columns chosen are ${listColumns(table.featureNames)}`,
  );
}

async function writePredictions(
  outPath: string,
  session: ModelSession,
  input: TensorSpec,
  table: FeatureTable,
  ctx: BatchPredictContext,
): Promise<{ sha256: string; sizeBytes: number }> {
  const width = table.featureNames.length;
  // A model with a fixed batch dimension takes that many rows at a time (1, in practice).
  const batchRows = input.shape[0] > 0 ? input.shape[0] : (ctx.batchRows ?? DEFAULT_BATCH_ROWS);
  if (input.shape[0] > 1 && table.rows % input.shape[0] !== 0) {
    throw new DatasetError(
      `the model's input '${input.name}' takes exactly ${input.shape[0]} rows at a time, and ${table.rows} rows ` +
        'do not divide into such batches',
    );
  }
  const outputNames = session.outputs.map((o) => o.name);
  const hash = createHash('sha256');
  let sizeBytes = 0;
  const file = await fs.promises.open(outPath, 'wx', 0o600);
  try {
    for (let start = 0; start < table.rows; start += batchRows) {
      ctx.signal.throwIfAborted();
      const rows = Math.min(batchRows, table.rows - start);
      const slice = table.features.subarray(start * width, (start + rows) * width);
      const data = input.datatype === 'FP64' ? Float64Array.from(slice) : slice;
      const feed = new ort.Tensor(input.datatype === 'FP64' ? 'float64' : 'float32', data, [rows, width]);
      const outputs = await session.run({ [input.name]: feed }, outputNames);
      const bytes = Buffer.from(predictionLines(outputNames, outputs, rows));
      hash.update(bytes);
      sizeBytes += bytes.length;
      await file.write(bytes);
    }
    await file.sync();
  } finally {
    await file.close();
  }
  return { sha256: hash.digest('hex'), sizeBytes };
}

/** One JSON line per row of the batch. */
export function predictionLines(
  outputNames: readonly string[],
  outputs: Readonly<Record<string, Tensor>>,
  rows: number,
): string {
  const columns = outputNames.map((name) => {
    const tensor = outputs[name];
    const perRow = tensor.dims.length <= 1 ? 1 : tensor.dims.slice(1).reduce((a, b) => a * Number(b), 1);
    return { key: JSON.stringify(name), tensor, perRow, scalar: tensor.dims.length <= 1 };
  });
  let text = '';
  for (let r = 0; r < rows; r++) {
    const fields = columns.map(({ key, tensor, perRow, scalar }) => {
      if (scalar) return `${key}:${jsonValue(tensor, r)}`;
      const values: string[] = [];
      for (let k = 0; k < perRow; k++) values.push(jsonValue(tensor, r * perRow + k));
      return `${key}:[${values.join(',')}]`;
    });
    text += `{${fields.join(',')}}\n`;
  }
  return text;
}

function jsonValue(tensor: Tensor, index: number): string {
  const value = (tensor.data as ArrayLike<unknown>)[index];
  switch (tensor.type) {
    case 'float32':
      return float32Json(value as number);
    case 'int64':
    case 'uint64':
      return String(value); // every digit (a BigInt has no JSON form; a double would round)
    case 'bool':
      return value ? 'true' : 'false';
    case 'float16':
      return float32Json(halfToFloat(value as number));
    case 'string':
      return JSON.stringify(value);
    default:
      return Number.isFinite(value as number) ? String(value) : 'null';
  }
}

/** The shortest decimal that reads back as the same float32 (0.93, not 0.9300000071525574). */
export function float32Json(value: number): string {
  if (!Number.isFinite(value)) return 'null'; // NaN and ±Infinity have no JSON form
  for (let digits = 1; digits < 9; digits++) {
    const text = value.toPrecision(digits);
    if (Math.fround(Number(text)) === value) return String(Number(text));
  }
  return String(Number(value.toPrecision(9)));
}
