/**
 * The jest environment for the ml specs that run onnxruntime-node (named in their
 * @jest-environment docblock). Jest runs each spec in its own VM context, whose typed-array
 * constructors are not Node's; onnxruntime's native binding creates output tensors with Node's
 * Float32Array, and onnxruntime-common then rejects them ("A float32 tensor's data must be type
 * of function Float32Array()"). This shares Node's typed arrays with the context (jest already
 * shares ArrayBuffer and Uint8Array for the same reason), so TensorFlow.js, onnxruntime and the
 * spec all see one realm, as in production. (serve/ carries the same environment for its specs.)
 */
import { TestEnvironment } from 'jest-environment-node';

const SHARED = [
  'Int8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
  'BigInt64Array',
  'BigUint64Array',
  'DataView',
];

export default class OnnxruntimeEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}
