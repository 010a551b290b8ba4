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
  const metadata: Record<string, string> = {};
  for (const prop of model.metadataProps ?? []) {
    if (prop.key) metadata[prop.key] = prop.value ?? '';
  }
  return metadata;
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
