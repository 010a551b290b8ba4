/**
 * Small ONNX models built in code (onnx-proto), for serving tests. The tree ensembles use the
 * attribute layout sklearn-onnx and onnxmltools write (ai.onnx.ml TreeEnsembleRegressor /
 * TreeEnsembleClassifier with nodes_* and target_* / class_* attributes), with trees small enough
 * to evaluate by hand; each builder's comment gives the trees and a few worked predictions.
 */
import onnx from 'onnx-proto';

const proto = onnx.onnx;
type ElemTypeName = keyof typeof ELEM_TYPES;
/** A dimension: a fixed size, or a symbolic name (a dynamic dimension, e.g. the batch). */
export type OnnxDim = number | string;

const ELEM_TYPES = {
  float16: proto.TensorProto.DataType.FLOAT16,
  float32: proto.TensorProto.DataType.FLOAT,
  float64: proto.TensorProto.DataType.DOUBLE,
  int8: proto.TensorProto.DataType.INT8,
  int16: proto.TensorProto.DataType.INT16,
  int32: proto.TensorProto.DataType.INT32,
  int64: proto.TensorProto.DataType.INT64,
  uint8: proto.TensorProto.DataType.UINT8,
  uint16: proto.TensorProto.DataType.UINT16,
  uint32: proto.TensorProto.DataType.UINT32,
  uint64: proto.TensorProto.DataType.UINT64,
  bool: proto.TensorProto.DataType.BOOL,
  string: proto.TensorProto.DataType.STRING,
} as const;

const OPSETS = [
  { domain: '', version: 15 },
  { domain: 'ai.onnx.ml', version: 3 },
];

const { AttributeType } = proto.AttributeProto;
const bytes = (s: string) => new TextEncoder().encode(s);
const attr = {
  int: (name: string, i: number) => ({ name, type: AttributeType.INT, i }),
  ints: (name: string, ints: number[]) => ({ name, type: AttributeType.INTS, ints }),
  floats: (name: string, floats: number[]) => ({ name, type: AttributeType.FLOATS, floats }),
  string: (name: string, s: string) => ({ name, type: AttributeType.STRING, s: bytes(s) }),
  strings: (name: string, strings: string[]) => ({
    name,
    type: AttributeType.STRINGS,
    strings: strings.map(bytes),
  }),
};

/** `shape` null: declared without a shape (any rank), unlike [] (a scalar). */
function tensorInfo(
  name: string,
  type: ElemTypeName,
  shape: readonly OnnxDim[] | null,
): onnx.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM_TYPES[type],
        ...(shape && {
          shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
        }),
      },
    },
  };
}

function encodeModel(graph: onnx.onnx.IGraphProto, producerName = 'hearth-testing'): Uint8Array {
  return proto.ModelProto.encode({
    irVersion: 8,
    opsetImport: OPSETS,
    producerName,
    producerVersion: '1',
    graph,
  }).finish();
}

/**
 * Linear regression y = x·w + b as MatMul + Add: input `float_input` float32 [N, 3], output
 * `variable` float32 [N, 1]; by default w = [2, -1, 0.5], b = 1:
 * [1, 2, 4] → 2 - 2 + 2 + 1 = 3;  [0, 0, 0] → 1;  [-1, 1, 2] → -2 - 1 + 1 + 1 = -1.
 */
export function linearRegressionModel(
  options: { coefficients?: readonly [number, number, number]; intercept?: number } = {},
): Uint8Array {
  const { coefficients = [2, -1, 0.5], intercept = 1 } = options;
  return encodeModel({
    name: 'linear_regression',
    node: [
      { opType: 'MatMul', input: ['float_input', 'coef'], output: ['multiplied'], name: 'MatMul' },
      { opType: 'Add', input: ['multiplied', 'intercept'], output: ['variable'], name: 'Add' },
    ],
    initializer: [
      { name: 'coef', dataType: ELEM_TYPES.float32, dims: [3, 1], floatData: [...coefficients] },
      { name: 'intercept', dataType: ELEM_TYPES.float32, dims: [1], floatData: [intercept] },
    ],
    input: [tensorInfo('float_input', 'float32', ['N', 3])],
    output: [tensorInfo('variable', 'float32', ['N', 1])],
  });
}

/**
 * A lookup table as a Gather: input `indices` int64 [N], output `rows` float32 [N, 2], the rows of
 * [[1, 2], [3, 4], [5, 6]]. onnxruntime takes indices from -3 to 2 and fails the run on any other,
 * a failure only the client's values cause.
 */
export function gatherModel(): Uint8Array {
  return encodeModel({
    name: 'gather',
    node: [{ opType: 'Gather', name: 'Gather_table', input: ['table', 'indices'], output: ['rows'] }],
    initializer: [
      { name: 'table', dataType: ELEM_TYPES.float32, dims: [3, 2], floatData: [1, 2, 3, 4, 5, 6] },
    ],
    input: [tensorInfo('indices', 'int64', ['N'])],
    output: [tensorInfo('rows', 'float32', ['N', 2])],
  });
}

/**
 * A model whose every run takes as long as `trips` says: a Loop of `trips` MatMuls of a
 * `size` × `size` matrix made from the input (so nothing folds at load). Input `x` float32 [N, 1],
 * output `y` float32 [N, 1] (x times a number near 1). For tests of what a slow model holds up.
 */
export function slowLoopModel(trips: number, size = 256): Uint8Array {
  const int64 = (name: string, values: number[], dims = [values.length]) => ({
    name,
    dataType: ELEM_TYPES.int64,
    dims,
    int64Data: values,
  });
  const body: onnx.onnx.IGraphProto = {
    name: 'body',
    input: [
      tensorInfo('i', 'int64', []),
      tensorInfo('cin', 'bool', []),
      tensorInfo('vin', 'float32', ['d', 'd']),
    ],
    output: [tensorInfo('cout', 'bool', []), tensorInfo('vout', 'float32', ['d', 'd'])],
    node: [
      { opType: 'Identity', input: ['cin'], output: ['cout'] },
      { opType: 'MatMul', input: ['vin', 'vin'], output: ['m'] },
      { opType: 'Sigmoid', input: ['m'], output: ['vout'] },
    ],
  };
  return proto.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 18 }],
    producerName: 'hearth-testing',
    producerVersion: '1',
    graph: {
      name: 'slow_loop',
      input: [tensorInfo('x', 'float32', ['N', 1])],
      output: [tensorInfo('y', 'float32', ['N', 1])],
      initializer: [
        int64('shape', [size, size]),
        int64('trip', [trips], []),
        { name: 'yes', dataType: ELEM_TYPES.bool, dims: [], int32Data: [1] },
        int64('axes', [0, 1]),
      ],
      node: [
        { opType: 'ReduceMean', input: ['x'], output: ['xm'], attribute: [attr.int('keepdims', 1)] },
        { opType: 'Expand', input: ['xm', 'shape'], output: ['v0'] },
        {
          opType: 'Loop',
          input: ['trip', 'yes', 'v0'],
          output: ['vend'],
          attribute: [{ name: 'body', type: AttributeType.GRAPH, g: body }],
        },
        {
          opType: 'ReduceMean',
          input: ['vend', 'axes'],
          output: ['s'],
          attribute: [attr.int('keepdims', 1)],
        },
        { opType: 'Mul', input: ['x', 's'], output: ['y'] },
      ],
    },
  }).finish();
}

/**
 * A two-tree gradient-boosted regressor the way onnxmltools exports XGBoost (aggregate SUM,
 * base value 0.5) but with sklearn's BRANCH_LEQ (x <= threshold takes the true branch).
 * Input `float_input` float32 [N, 2], output `variable` float32 [N, 1].
 *
 *   tree 0: x0 <= 0.5 ? 1.0 : (x1 <= 2.0 ? 2.0 : 3.0)
 *   tree 1: x1 <= 1.0 ? 0.5 : -0.5
 *
 * [0.2, 5] → 0.5 + 1 - 0.5 = 1.0;  [0.5, 1] → 0.5 + 1 + 0.5 = 2.0 (both on a threshold);
 * [3, 2] → 0.5 + 2 - 0.5 = 2.0;  [3, 0] → 0.5 + 2 + 0.5 = 3.0;  [3, 9] → 0.5 + 3 - 0.5 = 3.0.
 */
export function treeEnsembleRegressorModel(): Uint8Array {
  const trees = {
    // Per node, in (tree, node id) order; leaves have feature 0, value 0 and child ids 0.
    nodes_treeids: [0, 0, 0, 0, 0, 1, 1, 1],
    nodes_nodeids: [0, 1, 2, 3, 4, 0, 1, 2],
    nodes_featureids: [0, 0, 1, 0, 0, 1, 0, 0],
    nodes_values: [0.5, 0, 2.0, 0, 0, 1.0, 0, 0],
    nodes_modes: ['BRANCH_LEQ', 'LEAF', 'BRANCH_LEQ', 'LEAF', 'LEAF', 'BRANCH_LEQ', 'LEAF', 'LEAF'],
    nodes_truenodeids: [1, 0, 3, 0, 0, 1, 0, 0],
    nodes_falsenodeids: [2, 0, 4, 0, 0, 2, 0, 0],
  };
  return encodeModel({
    name: 'tree_ensemble_regressor',
    node: [
      {
        opType: 'TreeEnsembleRegressor',
        domain: 'ai.onnx.ml',
        name: 'TreeEnsembleRegressor',
        input: ['float_input'],
        output: ['variable'],
        attribute: [
          attr.string('aggregate_function', 'SUM'),
          attr.floats('base_values', [0.5]),
          attr.int('n_targets', 1),
          attr.ints('nodes_falsenodeids', trees.nodes_falsenodeids),
          attr.ints('nodes_featureids', trees.nodes_featureids),
          attr.floats(
            'nodes_hitrates',
            trees.nodes_nodeids.map(() => 1),
          ),
          attr.ints(
            'nodes_missing_value_tracks_true',
            trees.nodes_nodeids.map(() => 0),
          ),
          attr.strings('nodes_modes', trees.nodes_modes),
          attr.ints('nodes_nodeids', trees.nodes_nodeids),
          attr.ints('nodes_treeids', trees.nodes_treeids),
          attr.ints('nodes_truenodeids', trees.nodes_truenodeids),
          attr.floats('nodes_values', trees.nodes_values),
          attr.string('post_transform', 'NONE'),
          attr.ints('target_ids', [0, 0, 0, 0, 0]),
          attr.ints('target_nodeids', [1, 3, 4, 1, 2]),
          attr.ints('target_treeids', [0, 0, 0, 1, 1]),
          attr.floats('target_weights', [1.0, 2.0, 3.0, 0.5, -0.5]),
        ],
      },
    ],
    input: [tensorInfo('float_input', 'float32', ['N', 2])],
    output: [tensorInfo('variable', 'float32', ['N', 1])],
  });
}

/** Class labels of {@link treeEnsembleClassifierModel}, in probability-column order. */
export const TREE_CLASSIFIER_LABELS = [10, 20, 30] as const;

/**
 * A two-tree random-forest classifier as sklearn-onnx exports it (leaf class weights already
 * divided by the number of trees, post_transform NONE), three classes labelled 10, 20, 30.
 * Input `input` float32 [N, 2]. With zipmap false (the default, sklearn-onnx's zipmap=False):
 * outputs `label` int64 [N] and `probabilities` float32 [N, 3]. With zipmap true, a ZipMap node
 * turns the probabilities into `output_probability`, a seq(map(int64, float)) — not a tensor.
 *
 *   tree 0: x0 <= 1.0 ? [0.8, 0.2, 0] : (x1 <= 0.0 ? [0.1, 0.6, 0.3] : [0, 0.25, 0.75])
 *   tree 1: x1 <= 0.5 ? [0, 0, 1] : [0.4, 0.6, 0]
 *   probabilities = (tree 0 + tree 1) / 2, label = the class with the highest probability.
 *
 * [0, 5] → [0.6, 0.4, 0] → 10;  [2, 3] → [0.2, 0.425, 0.375] → 20;  [0, 0] → [0.4, 0.1, 0.5] → 30;
 * [2, -1] → [0.05, 0.3, 0.65] → 30;  [1, 0.5] (both on a threshold) → [0.4, 0.1, 0.5] → 30.
 */
export function treeEnsembleClassifierModel(options: { zipmap?: boolean } = {}): Uint8Array {
  const leaves: { tree: number; node: number; probabilities: number[] }[] = [
    { tree: 0, node: 1, probabilities: [0.8, 0.2, 0] },
    { tree: 0, node: 3, probabilities: [0.1, 0.6, 0.3] },
    { tree: 0, node: 4, probabilities: [0, 0.25, 0.75] },
    { tree: 1, node: 1, probabilities: [0, 0, 1] },
    { tree: 1, node: 2, probabilities: [0.4, 0.6, 0] },
  ];
  const nTrees = 2;
  const classEntries = leaves.flatMap((leaf) =>
    leaf.probabilities.map((p, classId) => ({ ...leaf, classId, weight: p / nTrees })),
  );
  const classifier: onnx.onnx.INodeProto = {
    opType: 'TreeEnsembleClassifier',
    domain: 'ai.onnx.ml',
    name: 'TreeEnsembleClassifier',
    input: ['input'],
    output: ['label', 'probabilities'],
    attribute: [
      attr.ints(
        'class_ids',
        classEntries.map((e) => e.classId),
      ),
      attr.ints(
        'class_nodeids',
        classEntries.map((e) => e.node),
      ),
      attr.ints(
        'class_treeids',
        classEntries.map((e) => e.tree),
      ),
      attr.floats(
        'class_weights',
        classEntries.map((e) => e.weight),
      ),
      attr.ints('classlabels_int64s', [...TREE_CLASSIFIER_LABELS]),
      attr.ints('nodes_falsenodeids', [2, 0, 4, 0, 0, 2, 0, 0]),
      attr.ints('nodes_featureids', [0, 0, 1, 0, 0, 1, 0, 0]),
      attr.floats('nodes_hitrates', [1, 1, 1, 1, 1, 1, 1, 1]),
      attr.ints('nodes_missing_value_tracks_true', [0, 0, 0, 0, 0, 0, 0, 0]),
      attr.strings('nodes_modes', [
        'BRANCH_LEQ',
        'LEAF',
        'BRANCH_LEQ',
        'LEAF',
        'LEAF',
        'BRANCH_LEQ',
        'LEAF',
        'LEAF',
      ]),
      attr.ints('nodes_nodeids', [0, 1, 2, 3, 4, 0, 1, 2]),
      attr.ints('nodes_treeids', [0, 0, 0, 0, 0, 1, 1, 1]),
      attr.ints('nodes_truenodeids', [1, 0, 3, 0, 0, 1, 0, 0]),
      attr.floats('nodes_values', [1.0, 0, 0.0, 0, 0, 0.5, 0, 0]),
      attr.string('post_transform', 'NONE'),
    ],
  };
  const input = [tensorInfo('input', 'float32', ['N', 2])];
  if (!options.zipmap) {
    return encodeModel({
      name: 'tree_ensemble_classifier',
      node: [classifier],
      input,
      output: [tensorInfo('label', 'int64', ['N']), tensorInfo('probabilities', 'float32', ['N', 3])],
    });
  }
  return encodeModel({
    name: 'tree_ensemble_classifier_zipmap',
    node: [
      classifier,
      { opType: 'Identity', input: ['label'], output: ['output_label'], name: 'LabelIdentity' },
      {
        opType: 'ZipMap',
        domain: 'ai.onnx.ml',
        name: 'ZipMap',
        input: ['probabilities'],
        output: ['output_probability'],
        attribute: [attr.ints('classlabels_int64s', [...TREE_CLASSIFIER_LABELS])],
      },
    ],
    input,
    output: [
      tensorInfo('output_label', 'int64', ['N']),
      {
        name: 'output_probability',
        type: {
          sequenceType: {
            elemType: {
              mapType: {
                keyType: ELEM_TYPES.int64,
                valueType: { tensorType: { elemType: ELEM_TYPES.float32 } },
              },
            },
          },
        },
      },
    ],
  });
}

export interface IdentityTensor {
  name: string;
  type: ElemTypeName;
  /** [] a scalar; null declared without a shape, so of any rank. */
  shape: readonly OnnxDim[] | null;
}

/**
 * A model that returns each input unchanged as output `<name>_out`: for testing how tensors of
 * every element type travel in and out of a server.
 */
export function identityModel(tensors: readonly IdentityTensor[]): Uint8Array {
  return encodeModel({
    name: 'identity',
    node: tensors.map((t) => ({
      opType: 'Identity',
      name: `Identity_${t.name}`,
      input: [t.name],
      output: [`${t.name}_out`],
    })),
    input: tensors.map((t) => tensorInfo(t.name, t.type, t.shape)),
    output: tensors.map((t) => tensorInfo(`${t.name}_out`, t.type, t.shape)),
  });
}
