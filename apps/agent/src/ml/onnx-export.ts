/**
 * Hearth's own ONNX exporter for the trainer's models: a stack of dense layers with their
 * activations, the feature standardisation in front (Sub, Div) and, for regression, the target's
 * scale behind (Mul, Add). Each dense layer is a Gemm; activations are Relu, Sigmoid, Tanh,
 * Softmax or none. Opset 17, IR version 8; input `input` float32 [N, features], output `output`
 * float32 [N, units]. The bytes depend only on the network, so equal weights give an equal hash.
 */
import onnx from 'onnx-proto';

export const ONNX_OPSET = 17;
export const ONNX_IR_VERSION = 8;
export const INPUT_NAME = 'input';
export const OUTPUT_NAME = 'output';

export type DenseActivation = 'linear' | 'relu' | 'sigmoid' | 'tanh' | 'softmax';

export interface DenseLayer {
  inputs: number;
  units: number;
  /** Row-major [inputs, units], as TensorFlow.js stores a Dense kernel. */
  kernel: Float32Array;
  bias: Float32Array;
  activation: DenseActivation;
}

export interface DenseNetwork {
  featureCount: number;
  /** (x - mean) / std, per feature, before the first layer. */
  standardization: { mean: Float32Array; std: Float32Array } | null;
  layers: DenseLayer[];
  /** y * scale + offset after the last layer (regression's target scale). */
  outputScale: { scale: number; offset: number } | null;
}

export interface OnnxExportOptions {
  producerVersion: string;
  /** Written as the model's metadata_props (e.g. feature names, labels), in the order given. */
  metadata?: Readonly<Record<string, string>>;
  docString?: string;
}

const ACTIVATION_OPS: Record<DenseActivation, string | null> = {
  linear: null,
  relu: 'Relu',
  sigmoid: 'Sigmoid',
  tanh: 'Tanh',
  softmax: 'Softmax',
};

const FLOAT = onnx.onnx.TensorProto.DataType.FLOAT;

export function exportOnnx(network: DenseNetwork, options: OnnxExportOptions): Uint8Array {
  validate(network);
  const nodes: onnx.onnx.INodeProto[] = [];
  const initializers: onnx.onnx.ITensorProto[] = [];
  let current = INPUT_NAME;
  const step = (
    opType: string,
    inputs: string[],
    name: string,
    attribute: onnx.onnx.IAttributeProto[] = [],
  ) => {
    nodes.push({ opType, input: [current, ...inputs], output: [name], name: `${name}_${opType}`, attribute });
    current = name;
  };

  if (network.standardization) {
    const { mean, std } = network.standardization;
    initializers.push(tensor('feature_mean', [network.featureCount], mean));
    initializers.push(tensor('feature_std', [network.featureCount], std));
    step('Sub', ['feature_mean'], 'centered');
    step('Div', ['feature_std'], 'standardized');
  }
  network.layers.forEach((layer, i) => {
    const name = `dense_${i}`;
    initializers.push(tensor(`${name}_kernel`, [layer.inputs, layer.units], layer.kernel));
    initializers.push(tensor(`${name}_bias`, [layer.units], layer.bias));
    step('Gemm', [`${name}_kernel`, `${name}_bias`], name);
    const op = ACTIVATION_OPS[layer.activation];
    if (op !== null) {
      step(op, [], `${name}_${layer.activation}`, op === 'Softmax' ? [intAttribute('axis', -1)] : []);
    }
  });
  if (network.outputScale) {
    initializers.push(tensor('output_scale', [1], Float32Array.of(network.outputScale.scale)));
    initializers.push(tensor('output_offset', [1], Float32Array.of(network.outputScale.offset)));
    step('Mul', ['output_scale'], 'scaled');
    step('Add', ['output_offset'], 'unscaled');
  }
  // The last node writes the graph's output.
  nodes[nodes.length - 1].output = [OUTPUT_NAME];
  const outputUnits = network.layers[network.layers.length - 1].units;

  const model = onnx.onnx.ModelProto.create({
    irVersion: ONNX_IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'hearth-agent',
    producerVersion: options.producerVersion,
    docString: options.docString ?? '',
    graph: {
      name: 'hearth_dense',
      node: nodes,
      initializer: initializers,
      input: [valueInfo(INPUT_NAME, network.featureCount)],
      output: [valueInfo(OUTPUT_NAME, outputUnits)],
    },
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
  });
  return onnx.onnx.ModelProto.encode(model).finish();
}

function validate(network: DenseNetwork): void {
  if (network.layers.length === 0) throw new Error('an ONNX export needs at least one dense layer');
  let width = network.featureCount;
  for (const [i, layer] of network.layers.entries()) {
    if (layer.inputs !== width)
      throw new Error(`dense layer ${i} takes ${layer.inputs} inputs, expected ${width}`);
    if (layer.kernel.length !== layer.inputs * layer.units || layer.bias.length !== layer.units) {
      throw new Error(`dense layer ${i} has weights of the wrong size`);
    }
    if (!(layer.activation in ACTIVATION_OPS))
      throw new Error(`unsupported activation ${String(layer.activation)}`);
    width = layer.units;
  }
  const s = network.standardization;
  if (s && (s.mean.length !== network.featureCount || s.std.length !== network.featureCount)) {
    throw new Error('the standardisation does not match the feature count');
  }
}

function tensor(name: string, dims: number[], values: Float32Array): onnx.onnx.ITensorProto {
  // raw_data is little-endian whatever the host's byte order.
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return { name, dims, dataType: FLOAT, rawData: raw };
}

function valueInfo(name: string, width: number): onnx.onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimParam: 'N' }, { dimValue: width }] } } },
  };
}

function intAttribute(name: string, value: number): onnx.onnx.IAttributeProto {
  return { name, type: onnx.onnx.AttributeProto.AttributeType.INT, i: value };
}
