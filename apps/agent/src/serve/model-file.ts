/**
 * Reads a model file a job names (already resolved inside the artifact root) and checks it before
 * anything loads it: its sha256 must be the one the job pinned (ModelRef.sha256), and it must be
 * an ONNX model (a ModelProto with a graph that has inputs, outputs and nodes). The bytes checked
 * are the bytes later loaded: the file is read once, so it cannot change in between.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import onnx from 'onnx-proto';

/** A model file that must not be loaded; the message says why, for the job's failure reason. */
export class ModelFileError extends Error {
  override readonly name = 'ModelFileError';
}

export interface VerifiedModel {
  readonly bytes: Uint8Array;
  readonly sha256: string;
  /** The model's metadata_props (e.g. hearth.featureNames, written by Hearth's trainer). */
  readonly metadata: Readonly<Record<string, string>>;
}

/** `uri` only names the file in messages. */
export async function readVerifiedModel(
  filePath: string,
  uri: string,
  expectedSha256: string,
): Promise<VerifiedModel> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(filePath);
  } catch (err) {
    throw new ModelFileError(
      `cannot read the model ${uri} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (sha256 !== expectedSha256) {
    throw new ModelFileError(
      `the model ${uri} has sha256 ${sha256}, not the ${expectedSha256} this job pins: ` +
        'the file changed since that model version was registered',
    );
  }
  return { bytes, sha256, metadata: onnxMetadata(bytes, uri) };
}

/** The metadata of an ONNX model; throws ModelFileError when the bytes are not one. */
export function onnxMetadata(bytes: Uint8Array, uri: string): Record<string, string> {
  const invalid = (why: string) => new ModelFileError(`the model ${uri} is not a valid ONNX model: ${why}`);
  let model: onnx.onnx.ModelProto;
  try {
    model = onnx.onnx.ModelProto.decode(bytes);
  } catch (err) {
    const detail = err instanceof Error ? err.message.split('\n')[0].slice(0, 120) : 'undecodable';
    throw invalid(`it does not decode as an ONNX ModelProto (${detail})`);
  }
  const graph = model.graph;
  if (!graph) throw invalid('it has no graph');
  if (!graph.node?.length) throw invalid('its graph has no nodes');
  if (!graph.input?.length) throw invalid('its graph has no inputs');
  if (!graph.output?.length) throw invalid('its graph has no outputs');
  if (!model.opsetImport?.length) throw invalid('it imports no operator set');
  // The tensor's name is the model author's text: the reason, which leaves the machine, omits it.
  if (externalTensor(model) !== null) {
    throw new ModelFileError(
      `the model ${uri} keeps a tensor in an external data file, which the agent does not load: ` +
        'save the model with its weights inside it (onnx.save_model(model, path, ' +
        "save_as_external_data=False)); a model over protobuf's 2 GB limit cannot be served here",
    );
  }
  const metadata: Record<string, string> = {};
  for (const prop of model.metadataProps ?? []) {
    if (prop.key) metadata[prop.key] = prop.value ?? '';
  }
  return metadata;
}

/**
 * The name of a tensor the model keeps in an external data file, or null when all are inside it.
 *
 * onnxruntime resolves such a file against the process's working directory when the model is
 * loaded from bytes (as the agent loads it, so that the bytes checked are the bytes loaded), and
 * only refuses paths that leave that directory. The agent's is `/` under systemd, so a model could
 * name any file the agent may read, its own NATS key included, and hand its bytes to whoever calls
 * the model (an Identity output, a batch_predict's predictions). Every tensor of the model is
 * looked at: initializers, sparse ones, tensor attributes (a Constant), in subgraphs (If, Loop,
 * Scan), local functions and training graphs alike.
 *
 * This is the first of two layers, the one with a clear message: it reads the model with
 * protobufjs, which keeps the last copy of a field given twice where onnxruntime merges the
 * copies, so a crafted file can hide an external tensor from it. The second layer is onnxruntime's
 * own: model-session.ts points its external data at an empty directory.
 */
export function externalTensor(model: onnx.onnx.IModelProto): string | null {
  type Graph = onnx.onnx.IGraphProto;
  type Tensor = onnx.onnx.ITensorProto;
  const graphs: Graph[] = [];
  const nodes: onnx.onnx.INodeProto[] = [];
  const tensors: Tensor[] = [];
  const sparse = (s: onnx.onnx.ISparseTensorProto) => {
    if (s.values) tensors.push(s.values);
    if (s.indices) tensors.push(s.indices);
  };
  if (model.graph) graphs.push(model.graph);
  for (const fn of model.functions ?? []) nodes.push(...(fn.node ?? []));
  for (const info of model.trainingInfo ?? []) {
    if (info.initialization) graphs.push(info.initialization);
    if (info.algorithm) graphs.push(info.algorithm);
  }
  // Iterative: subgraphs nest as deep as the file says.
  for (;;) {
    const tensor = tensors.pop();
    if (tensor) {
      if (
        tensor.dataLocation === onnx.onnx.TensorProto.DataLocation.EXTERNAL ||
        tensor.externalData?.length
      ) {
        return tensor.name || '(unnamed)';
      }
      continue;
    }
    const node = nodes.pop();
    if (node) {
      for (const a of node.attribute ?? []) {
        if (a.t) tensors.push(a.t);
        tensors.push(...(a.tensors ?? []));
        if (a.sparseTensor) sparse(a.sparseTensor);
        for (const s of a.sparseTensors ?? []) sparse(s);
        if (a.g) graphs.push(a.g);
        graphs.push(...(a.graphs ?? []));
      }
      continue;
    }
    const graph = graphs.pop();
    if (!graph) return null;
    tensors.push(...(graph.initializer ?? []));
    for (const s of graph.sparseInitializer ?? []) sparse(s);
    nodes.push(...(graph.node ?? []));
  }
}

/** The input columns Hearth's trainer recorded in the model (hearth.featureNames), if any. */
export function recordedFeatureNames(metadata: Readonly<Record<string, string>>): string[] | null {
  const raw = metadata['hearth.featureNames'];
  if (raw === undefined) return null;
  try {
    const names: unknown = JSON.parse(raw);
    if (Array.isArray(names) && names.length > 0 && names.every((n) => typeof n === 'string' && n !== '')) {
      return names as string[];
    }
  } catch {
    // not ours, or damaged: fall back to the dataset's numeric columns
  }
  return null;
}

/**
 * Of `names`, the graph inputs the model declares as scalars (a shape with no dimensions), as
 * opposed to inputs declared without a shape: onnxruntime reports both as [] and checks the rank of
 * neither, so the server must (a scalar input fed a [2,2] tensor ran on it). Bytes that do not
 * decode give no scalars: onnxruntime has accepted them, and only this check is lost.
 */
export function declaredScalarInputs(bytes: Uint8Array, names: readonly string[]): Set<string> {
  const scalars = new Set<string>();
  let inputs: onnx.onnx.IValueInfoProto[];
  try {
    inputs = onnx.onnx.ModelProto.decode(bytes).graph?.input ?? [];
  } catch {
    return scalars;
  }
  for (const input of inputs) {
    const shape = input.type?.tensorType?.shape;
    if (input.name && names.includes(input.name) && shape && (shape.dim?.length ?? 0) === 0) {
      scalars.add(input.name);
    }
  }
  return scalars;
}
