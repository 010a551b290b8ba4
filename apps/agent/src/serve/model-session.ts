/**
 * Loads an ONNX model into an onnxruntime-node InferenceSession: the CUDA execution provider when
 * its libraries are installed (falling back to CPU when CUDA cannot start), else CPU. Exposes the
 * model's inputs and outputs as Open Inference Protocol tensor metadata, and refuses, at load, a
 * model the protocol cannot serve (non-tensor inputs or outputs, element types OIP has no name for).
 */
import fs from 'node:fs/promises';
import { chmodSync, existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { errorMessage } from '../logger.js';
import { declaredScalarInputs } from './model-file.js';
import { ServeError } from './serve.errors.js';
import { replaceZipMapOutputs } from './zipmap-rewrite.js';

export const OIP_DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
] as const;
export type OipDatatype = (typeof OIP_DATATYPES)[number];

/** onnxruntime's element type for each OIP datatype. */
export const ORT_TYPE: Readonly<Record<OipDatatype, Tensor.Type>> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
};
const OIP_TYPE = new Map(Object.entries(ORT_TYPE).map(([oip, ortType]) => [ortType, oip as OipDatatype]));

/** An input or output as OIP model metadata shows it: -1 for a dynamic dimension. */
export interface TensorSpec {
  readonly name: string;
  readonly datatype: OipDatatype;
  readonly shape: readonly number[];
}

export type ExecutionProvider = 'cuda' | 'cpu';

export interface ModelSession {
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /** Inputs declared with rank 0; the others whose shape is [] were declared without a shape. */
  readonly scalarInputs: ReadonlySet<string>;
  readonly executionProvider: ExecutionProvider;
  /** Why CUDA was tried and not used; null when it was used or not tried. */
  readonly cudaFallbackReason: string | null;
  /** What was changed to make the model servable (e.g. a ZipMap output replaced), for the log. */
  readonly conversions: readonly string[];
  run(
    feeds: Readonly<Record<string, Tensor>>,
    outputNames: readonly string[],
  ): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

export interface ModelSessionOptions {
  /** Try the CUDA execution provider. Default: when its libraries are installed. */
  cuda?: boolean;
  /** Threads for one operator; default: onnxruntime's (the number of cores). */
  intraOpThreads?: number;
}

/** Whether onnxruntime-node lists CUDA and its provider library is present (it is a separate install). */
export function cudaProviderInstalled(): boolean {
  const cuda = ort.listSupportedBackends().find((backend) => backend.name === 'cuda');
  if (!cuda) return false;
  if (cuda.bundled) return true;
  try {
    const entry = createRequire(import.meta.url).resolve('onnxruntime-node');
    const bin = path.join(path.dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
    const file =
      process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
    return existsSync(path.join(bin, file));
  } catch {
    return false;
  }
}

/** Loads a model from a file path or from its bytes. Throws ServeError MODEL_LOAD_FAILED. */
export async function loadModelSession(
  source: string | Uint8Array,
  options: ModelSessionOptions = {},
): Promise<ModelSession> {
  let bytes = typeof source === 'string' ? await readModelFile(source) : source;
  let created = await createSession(bytes, options);
  const conversions: string[] = [];
  if (created.session.outputMetadata.some((m) => !m.isTensor)) {
    // sklearn-onnx's default classifier export ends in ZipMap (a sequence of maps); serve the
    // probability tensor ZipMap was given instead. Only such models pay for the decode.
    const rewritten = replaceZipMapOutputs(bytes);
    if (rewritten.replaced.length > 0) {
      await created.session.release();
      bytes = rewritten.bytes;
      created = await createSession(bytes, options);
      conversions.push(
        ...rewritten.replaced.map(
          (name) =>
            `output '${name}': ZipMap removed, served as the probability tensor (columns in class order)`,
        ),
      );
    }
  }
  const { session, executionProvider, cudaFallbackReason } = created;
  try {
    const inputs = session.inputMetadata.map((m) => tensorSpec(m, 'input'));
    const outputs = session.outputMetadata.map((m) => tensorSpec(m, 'output'));
    // Only a model with such an input pays for decoding its graph.
    const rankless = inputs.filter((i) => i.shape.length === 0).map((i) => i.name);
    return {
      inputs,
      outputs,
      scalarInputs: rankless.length > 0 ? declaredScalarInputs(bytes, rankless) : new Set(),
      executionProvider,
      cudaFallbackReason,
      conversions,
      run: (feeds, outputNames) => session.run(feeds, [...outputNames]),
      release: () => session.release(),
    };
  } catch (err) {
    await session.release();
    throw err;
  }
}

async function readModelFile(file: string): Promise<Uint8Array> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ServeError('MODEL_LOAD_FAILED', `cannot read the model file ${file}: ${code}`);
  }
}

interface CreatedSession {
  session: InferenceSession;
  executionProvider: ExecutionProvider;
  cudaFallbackReason: string | null;
}

/**
 * An empty directory of this process's own, where onnxruntime is told to look for a model's
 * external data files. A model loaded from bytes would otherwise have them looked up against the
 * process's working directory (/ under systemd): any file the agent may read. model-file.ts refuses
 * models with external data before they get here, but it reads them with protobufjs, which keeps the
 * last of a field given twice where onnxruntime merges both (inference-server audit, finding 13;
 * ML-jobs audit, finding 1): onnxruntime's own view is the one that must find nothing.
 */
let noExternalData: string | null = null;
function externalDataDir(): string {
  if (noExternalData === null || !existsSync(noExternalData)) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hearth-no-external-data-'));
    chmodSync(dir, 0o500);
    noExternalData = dir;
  }
  return noExternalData;
}

async function createSession(bytes: Uint8Array, options: ModelSessionOptions): Promise<CreatedSession> {
  const base: InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    extra: {
      session: {
        model_external_initializers_file_folder_path: externalDataDir(),
        // ONNX only: bytes that also read as an ORT-format flatbuffer take no other loader.
        load_model_format: 'ONNX',
      },
    },
    // Fatal only: onnxruntime writes to stderr on its own, bypassing our logger, and its error line
    // for a failed run quotes input values (one line per request any client can cause). Errors
    // reach us as exceptions anyway (run-failure.ts).
    logSeverityLevel: 4,
    ...(options.intraOpThreads ? { intraOpNumThreads: options.intraOpThreads } : {}),
  };
  let cudaFallbackReason: string | null = null;
  if (options.cuda ?? cudaProviderInstalled()) {
    try {
      const session = await ort.InferenceSession.create(bytes, {
        ...base,
        executionProviders: ['cuda', 'cpu'],
      });
      return { session, executionProvider: 'cuda', cudaFallbackReason: null };
    } catch (err) {
      cudaFallbackReason = ortMessage(err);
    }
  }
  try {
    const session = await ort.InferenceSession.create(bytes, { ...base, executionProviders: ['cpu'] });
    return { session, executionProvider: 'cpu', cudaFallbackReason };
  } catch (err) {
    const message = ortMessage(err);
    throw new ServeError(
      'MODEL_LOAD_FAILED',
      `onnxruntime cannot load the model: ${loadFailureKind(message)} (the agent's log has onnxruntime's message)`,
      message,
    );
  }
}

/**
 * What kind of load failure onnxruntime's message describes, in words that quote nothing of the
 * model: the message itself names its nodes, tensors and attribute values, which a model's author
 * chooses freely, and a job's reason would carry them off the machine (ML-jobs audit, finding 8).
 */
export function loadFailureKind(message: string): string {
  if (/protobuf parsing failed/i.test(message)) return 'the file does not parse as an ONNX model';
  if (/external data/i.test(message)) {
    return 'it keeps tensors in external data files, which the agent does not load';
  }
  if (/IR version|opset/i.test(message)) {
    return 'its IR version or operator set is not one this onnxruntime supports';
  }
  if (
    /could not find an implementation|no op registered|not a registered function|unrecognized attribute/i.test(
      message,
    )
  ) {
    return 'it uses an operator or an attribute this onnxruntime does not implement';
  }
  if (/type ?(error|inference|mismatch)|shape ?inference|invalid (rank|shape)/i.test(message)) {
    return 'its graph does not check: a type or shape error';
  }
  return 'onnxruntime refused it';
}

function tensorSpec(meta: InferenceSession.ValueMetadata, role: 'input' | 'output'): TensorSpec {
  if (!meta.isTensor) {
    throw new ServeError(
      'MODEL_LOAD_FAILED',
      `${role} '${meta.name}' is not a tensor (a sequence or map, such as sklearn-onnx's ZipMap output); ` +
        'the Open Inference Protocol serves tensors only: export the model with tensor outputs ' +
        "(for sklearn-onnx classifiers, options={'zipmap': False})",
    );
  }
  const datatype = OIP_TYPE.get(meta.type);
  if (!datatype) {
    throw new ServeError(
      'MODEL_LOAD_FAILED',
      `${role} '${meta.name}' has element type ${meta.type}, which the Open Inference Protocol cannot carry`,
    );
  }
  return {
    name: meta.name,
    datatype,
    shape: meta.shape.map((dim) => (typeof dim === 'number' && dim >= 0 ? dim : -1)),
  };
}

/** onnxruntime's message, on one line and bounded (its native errors can run long). */
export function ortMessage(err: unknown): string {
  return errorMessage(err).replace(/\s+/g, ' ').trim().slice(0, 500);
}
