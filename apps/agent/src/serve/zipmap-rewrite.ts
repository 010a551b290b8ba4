/**
 * sklearn-onnx (and onnxmltools) end classifiers in an ai.onnx.ml ZipMap by default: the
 * probabilities become a sequence of {label: probability} maps, which no OIP tensor can carry.
 * This rewrite serves what ZipMap was given instead, under the same output name: the probability
 * tensor, float [N, classes], its columns in class-label order (the model's `classes_`).
 */
import onnx from 'onnx-proto';

const proto = onnx.onnx;

export interface ZipMapRewrite {
  bytes: Uint8Array;
  /** Names of the outputs that were ZipMap sequences and now are probability tensors. */
  replaced: string[];
}

export function replaceZipMapOutputs(bytes: Uint8Array): ZipMapRewrite {
  let model: onnx.onnx.ModelProto;
  try {
    model = proto.ModelProto.decode(bytes);
  } catch {
    return { bytes, replaced: [] };
  }
  const graph = model.graph;
  if (!graph) return { bytes, replaced: [] };
  const replaced: string[] = [];
  for (const output of graph.output ?? []) {
    const name = output.name;
    if (!name || output.type?.tensorType) continue;
    const node = graph.node?.find((n) => n.output?.includes(name));
    if (!node || node.opType !== 'ZipMap' || node.domain !== 'ai.onnx.ml' || node.input?.length !== 1) {
      continue;
    }
    const labels = node.attribute?.find(
      (a) => a.name === 'classlabels_int64s' || a.name === 'classlabels_strings',
    );
    const classes = (labels?.ints?.length ?? 0) + (labels?.strings?.length ?? 0);
    node.opType = 'Identity';
    node.domain = '';
    node.attribute = [];
    output.type = proto.TypeProto.create({
      tensorType: {
        elemType: proto.TensorProto.DataType.FLOAT,
        // The batch dimension stays unnamed (dynamic); the class count is known when labels are.
        shape: { dim: [{}, classes > 0 ? { dimValue: classes } : {}] },
      },
    });
    replaced.push(name);
  }
  if (replaced.length === 0) return { bytes, replaced };
  return { bytes: proto.ModelProto.encode(model).finish(), replaced };
}
