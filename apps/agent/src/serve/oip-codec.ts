/**
 * The Open Inference Protocol v2 JSON body of an inference request, checked against the model's
 * inputs and turned into onnxruntime tensors (the response's body is oip-response.ts's). Every
 * rejection is a BAD_REQUEST, or PAYLOAD_TOO_LARGE for a tensor over the limits, naming the input
 * and what is wrong with it, never the data itself.
 */
import ort from 'onnxruntime-node';
import type { Tensor } from 'onnxruntime-node';
import { DEFAULT_SERVE_LIMITS } from '../policy/local-policy.js';
import { OIP_DATATYPES, ORT_TYPE, type OipDatatype, type TensorSpec } from './model-session.js';
import { TYPED_ARRAYS, type BinaryReader } from './oip-binary.js';
import { NumberArray } from './oip-json.js';
import { ServeError, badRequest } from './serve.errors.js';

export interface ModelSignature {
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /** Inputs declared with rank 0 (ModelSession.scalarInputs); the model's other [] shapes are unknown. */
  readonly scalarInputs?: ReadonlySet<string>;
}

export interface InferRequest {
  /** The request's `id`, echoed in the response. */
  readonly id: string | undefined;
  readonly feeds: Record<string, Tensor>;
  /** The outputs to return, in the order asked (all of the model's when none were named). */
  readonly outputNames: readonly string[];
  /** Outputs to return as binary tensor data (oip-binary.ts) rather than JSON. */
  readonly binaryOutputs: ReadonlySet<string>;
}

/**
 * How many elements one input tensor may have, checked from its shape before its data is read or
 * allocated. Every element of JSON `data` or of a BYTES tensor is a JavaScript value made, checked
 * and handed to onnxruntime on this process's event loop; without a cap, one body within the byte
 * limit (millions of empty strings) blocked serving for tens of seconds and exhausted the heap.
 */
export interface TensorLimits {
  /** Any input tensor; the default takes every numeric tensor a default-size body can carry. */
  readonly maxElements: number;
  /** A BYTES input tensor, whose elements are each a JavaScript string. */
  readonly maxStringElements: number;
}

/** The local policy's defaults (serve.limits). */
export const DEFAULT_TENSOR_LIMITS: TensorLimits = {
  maxElements: DEFAULT_SERVE_LIMITS.maxElements,
  maxStringElements: DEFAULT_SERVE_LIMITS.maxStringElements,
};

/**
 * Parses a decoded JSON body (JSON.parse's, or parseJsonBody's with NumberArray data); `binary` holds the bytes after the JSON header when the request uses
 * the binary tensor data extension. Throws ServeError BAD_REQUEST, or PAYLOAD_TOO_LARGE for a tensor
 * over `limits`.
 */
export function parseInferRequest(
  body: unknown,
  model: ModelSignature,
  binary?: BinaryReader,
  limits: TensorLimits = DEFAULT_TENSOR_LIMITS,
): InferRequest {
  if (!isObject(body)) throw badRequest('the request body must be a JSON object');
  const { id, parameters, inputs, outputs } = body;
  if (id !== undefined && typeof id !== 'string') throw badRequest("'id' must be a string");
  if (parameters !== undefined && !isObject(parameters)) throw badRequest("'parameters' must be an object");
  if (!Array.isArray(inputs) || inputs.length === 0) throw badRequest("'inputs' must be a non-empty array");

  const feeds: Record<string, Tensor> = {};
  for (const [index, input] of inputs.entries()) {
    if (!isObject(input) || typeof input.name !== 'string') {
      throw badRequest(`inputs[${index}] must be an object with a string 'name'`);
    }
    const spec = model.inputs.find((i) => i.name === input.name);
    if (!spec) {
      throw badRequest(
        `unknown input '${bounded(input.name)}'; the model's inputs are: ${names(model.inputs)}`,
      );
    }
    if (Object.hasOwn(feeds, spec.name)) throw badRequest(`input '${spec.name}' is given more than once`);
    feeds[spec.name] = inputTensor(input, spec, model.scalarInputs?.has(spec.name) ?? false, binary, limits);
  }
  const missing = model.inputs.filter((i) => !Object.hasOwn(feeds, i.name));
  if (missing.length > 0) throw badRequest(`missing input ${missing.map((i) => `'${i.name}'`).join(', ')}`);
  binary?.finish();

  const allBinary = isObject(parameters) && parameters.binary_data_output === true;
  const binaryOutputs = new Set<string>();
  const outputNames = requestedOutputs(outputs, model, (name, asked) => {
    if (asked ?? allBinary) binaryOutputs.add(name);
  });
  return { id, feeds, outputNames, binaryOutputs };
}

function requestedOutputs(
  outputs: unknown,
  model: ModelSignature,
  binary: (name: string, asked: boolean | undefined) => void,
): string[] {
  const all = () => model.outputs.map((o) => (binary(o.name, undefined), o.name));
  if (outputs === undefined) return all();
  if (!Array.isArray(outputs)) throw badRequest("'outputs' must be an array");
  if (outputs.length === 0) return all();
  const selected: string[] = [];
  for (const [index, output] of outputs.entries()) {
    if (!isObject(output) || typeof output.name !== 'string') {
      throw badRequest(`outputs[${index}] must be an object with a string 'name'`);
    }
    const name = output.name;
    if (!model.outputs.some((o) => o.name === name)) {
      throw badRequest(`unknown output '${bounded(name)}'; the model's outputs are: ${names(model.outputs)}`);
    }
    if (isObject(output.parameters) && output.parameters.classification !== undefined) {
      throw badRequest(`output '${name}': the classification extension is not supported`);
    }
    const asked = isObject(output.parameters) ? output.parameters.binary_data : undefined;
    if (asked !== undefined && typeof asked !== 'boolean') {
      throw badRequest(`output '${name}': 'binary_data' must be true or false`);
    }
    binary(name, asked);
    if (!selected.includes(name)) selected.push(name);
  }
  return selected;
}

function inputTensor(
  input: Record<string, unknown>,
  spec: TensorSpec,
  scalar: boolean,
  binary: BinaryReader | undefined,
  limits: TensorLimits,
): Tensor {
  const { name } = spec;
  const binarySize = isObject(input.parameters) ? input.parameters.binary_data_size : undefined;
  if (binarySize !== undefined && !binary) {
    throw badRequest(
      `input '${name}': 'binary_data_size' needs a binary body (an Inference-Header-Content-Length header)`,
    );
  }
  if (binarySize !== undefined && input.data !== undefined) {
    throw badRequest(`input '${name}': give either 'data' or 'binary_data_size', not both`);
  }
  if (typeof input.datatype !== 'string' || !isDatatype(input.datatype)) {
    throw badRequest(
      `input '${name}': 'datatype' must be one of ${OIP_DATATYPES.join(', ')} (the model's is ${spec.datatype})`,
    );
  }
  if (input.datatype !== spec.datatype) {
    throw badRequest(
      `input '${name}': datatype ${input.datatype} does not match the model's ${spec.datatype}`,
    );
  }
  const shape = input.shape;
  // onnxruntime takes dimensions below 2^31 (a larger one fails inside run()). The rank is bounded
  // for inputs declared without a shape, whose nested data is walked one level per dimension.
  if (
    !Array.isArray(shape) ||
    shape.length > MAX_RANK ||
    !shape.every((d) => Number.isInteger(d) && d >= 0 && d <= MAX_DIM)
  ) {
    throw badRequest(
      `input '${name}': 'shape' must be an array of at most ${MAX_RANK} integers from 0 to ${MAX_DIM}`,
    );
  }
  const dims = shape as number[];
  checkShape(name, dims, spec.shape, scalar);
  const count = dims.reduce((n, d) => n * d, 1);
  const max = spec.datatype === 'BYTES' ? limits.maxStringElements : limits.maxElements;
  if (count > max) {
    throw new ServeError(
      'PAYLOAD_TOO_LARGE',
      `input '${name}': shape ${shapeText(dims)} holds ${count} elements; this server takes at most ${max} per ${spec.datatype === 'BYTES' ? 'BYTES ' : ''}tensor`,
    );
  }
  if (binarySize !== undefined) {
    const data = binary!.tensorData(name, spec.datatype, count, binarySize);
    return new ort.Tensor(ORT_TYPE[spec.datatype], data, dims);
  }
  const elements =
    input.data instanceof NumberArray
      ? numberElements(name, input.data, dims)
      : flatten(name, input.data, dims);
  if (elements.length !== count) {
    throw badRequest(
      `input '${name}': shape ${shapeText(dims)} holds ${count} elements but 'data' has ${elements.length}`,
    );
  }
  return new ort.Tensor(ORT_TYPE[spec.datatype], typedData(name, spec.datatype, elements), dims);
}

function checkShape(name: string, shape: readonly number[], model: readonly number[], scalar: boolean): void {
  // onnxruntime reports an input declared without a shape as [], the same as a scalar: any shape
  // goes unless the model declared rank 0.
  if (model.length === 0 && !scalar) return;
  const fits = shape.length === model.length && model.every((d, i) => d < 0 || d === shape[i]);
  if (!fits) {
    throw badRequest(
      `input '${name}': shape ${shapeText(shape)} does not match the model's [${model.join(',')}]`,
    );
  }
}

/** flatten() for numbers read by parseJsonBody: nested, their nesting must be exactly the shape. */
function numberElements(name: string, data: NumberArray, shape: readonly number[]): ArrayLike<number> {
  if (data.dims.length === 1) return data.values;
  const fits = data.dims.length === shape.length && data.dims.every((d, i) => d === shape[i]);
  if (!fits) throw nestingMismatch(name, shape);
  return data.values;
}

/** Row-major elements of flat data, or of nested data whose nesting is exactly the shape. */
function flatten(name: string, data: unknown, shape: readonly number[]): unknown[] {
  if (!Array.isArray(data)) throw badRequest(`input '${name}': 'data' must be an array`);
  if (!data.some(Array.isArray)) return data;
  if (shape.length === 0) throw nestingMismatch(name, shape);
  const out: unknown[] = [];
  const last = shape.length - 1;
  const walk = (node: unknown, depth: number): void => {
    if (!Array.isArray(node) || node.length !== shape[depth]) throw nestingMismatch(name, shape);
    if (depth < last) {
      for (const child of node) walk(child, depth + 1);
      return;
    }
    // The innermost level (rows of numbers, typically): a plain loop.
    for (let i = 0; i < node.length; i++) {
      const leaf: unknown = node[i];
      if (Array.isArray(leaf)) throw nestingMismatch(name, shape);
      out.push(leaf);
    }
  };
  walk(data, 0);
  return out;
}

const nestingMismatch = (name: string, shape: readonly number[]) =>
  badRequest(
    `input '${name}': nested 'data' does not match shape ${shapeText(shape)}; nest it exactly or flatten it`,
  );

const INT_RANGES = {
  INT8: [-(2 ** 7), 2 ** 7 - 1],
  INT16: [-(2 ** 15), 2 ** 15 - 1],
  INT32: [-(2 ** 31), 2 ** 31 - 1],
  UINT8: [0, 2 ** 8 - 1],
  UINT16: [0, 2 ** 16 - 1],
  UINT32: [0, 2 ** 32 - 1],
  // JSON numbers are doubles: beyond 2^53 a client's integer has already lost digits.
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  UINT64: [0, Number.MAX_SAFE_INTEGER],
} as const;
const FP16_MAX = 65504;
/** The largest finite float32: a JSON number beyond it would be stored as ±Infinity. */
const FP32_MAX = 3.4028234663852886e38;
const MAX_DIM = 2 ** 31 - 1;
/** numpy's limit (NPY_MAXDIMS, 64 since numpy 2); ONNX models in practice use a handful. */
const MAX_RANK = 64;
/** onnxruntime's string tensors are C strings: a NUL would cut the element short, silently. */
const NO_NUL = 'a string without NUL characters (onnxruntime string tensors cannot hold them)';
const WELL_FORMED = 'well-formed Unicode (it has a lone surrogate, which UTF-8 cannot encode)';
/** String.prototype.isWellFormed: Node 20 has it, TypeScript's ES2023 library does not declare it. */
type WellFormed = string & { isWellFormed(): boolean };

// Plain indexed loops into a preallocated array: TypedArray.from with a map function is an order
// of magnitude slower, and this runs once per element of every request.
function typedData(name: string, datatype: OipDatatype, elements: ArrayLike<unknown>): Tensor['data'] {
  const fail = (index: number, expected: string) =>
    badRequest(`input '${name}': element ${index} is not ${expected} (datatype ${datatype})`);
  const n = elements.length;
  switch (datatype) {
    case 'BYTES':
      for (let i = 0; i < n; i++) {
        const v = elements[i];
        if (typeof v !== 'string') throw fail(i, 'a string');
        if (v.includes('\u0000')) throw fail(i, NO_NUL);
        // A lone surrogate has no UTF-8 form: onnxruntime would store U+FFFD in its place.
        if (!(v as WellFormed).isWellFormed()) throw fail(i, WELL_FORMED);
      }
      return elements as string[];
    case 'BOOL': {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const v = elements[i];
        if (typeof v !== 'boolean') throw fail(i, 'true or false');
        out[i] = v ? 1 : 0;
      }
      return out;
    }
    case 'FP32':
    case 'FP64': {
      // JSON has no Infinity, but 1e39 is one in float32 and 1e400 one after parsing: refused, not
      // answered as data the client did not send (the output would be null).
      const max = datatype === 'FP32' ? FP32_MAX : Number.MAX_VALUE;
      const expected = datatype === 'FP32' ? `a number within ±${FP32_MAX} (float32)` : 'a finite number';
      const out = datatype === 'FP32' ? new Float32Array(n) : new Float64Array(n);
      // One pass: numbers from oip-json.ts's Float64Array or JSON.parse's arrays alike, each checked
      // as it is stored (to float32 with the same rounding as a typed-array copy).
      for (let i = 0; i < n; i++) {
        const v = elements[i];
        if (typeof v !== 'number') throw fail(i, 'a number');
        if (!(v <= max && v >= -max)) throw fail(i, expected);
        out[i] = v;
      }
      return out;
    }
    case 'FP16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        const v = elements[i];
        if (typeof v !== 'number' || Math.abs(v) > FP16_MAX) throw fail(i, `a number within ±${FP16_MAX}`);
        out[i] = floatToHalf(v);
      }
      return out;
    }
    default: {
      const [min, max] = INT_RANGES[datatype];
      const check = (i: number): number => {
        const v = elements[i];
        if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
          throw fail(i, `an integer from ${min} to ${max}`);
        }
        return v;
      };
      if (datatype === 'INT64' || datatype === 'UINT64') {
        const out = datatype === 'INT64' ? new BigInt64Array(n) : new BigUint64Array(n);
        for (let i = 0; i < n; i++) out[i] = BigInt(check(i));
        return out;
      }
      const out = new TYPED_ARRAYS[datatype](n);
      for (let i = 0; i < n; i++) out[i] = check(i);
      return out;
    }
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 half-precision bits of a number, rounded to nearest even. */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = ((x >>> 23) & 0xff) - 127 + 15;
  let mantissa = x & 0x7fffff;
  if (((x >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  if (exponent >= 0x1f) return sign | 0x7c00;
  let shift = 13;
  let bits: number;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    mantissa |= 0x800000;
    shift = 14 - exponent;
    bits = mantissa >>> shift;
  } else {
    bits = (exponent << 10) | (mantissa >>> 13);
  }
  const rest = mantissa & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && bits & 1)) bits += 1;
  return sign | bits;
}

export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isDatatype(value: string): value is OipDatatype {
  return (OIP_DATATYPES as readonly string[]).includes(value);
}

/**
 * A client's shape as quoted in an error message: at most 8 dimensions, then the count, so that a
 * shape of a million dimensions does not come back as a megabyte of error.
 */
const shapeText = (shape: readonly number[]) =>
  shape.length > 8 ? `[${shape.slice(0, 8).join(',')},…] (${shape.length} dims)` : `[${shape.join(',')}]`;

/** A name from the request, cut short enough for an error message. */
const bounded = (name: string) => (name.length > 64 ? `${name.slice(0, 64)}…` : name);

const names = (tensors: readonly TensorSpec[]) =>
  tensors
    .slice(0, 20)
    .map((t) => t.name)
    .join(', ') + (tensors.length > 20 ? ', …' : '');
