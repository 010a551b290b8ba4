/**
 * The jest environment for specs that run onnxruntime-node (named in their @jest-environment
 * docblock). Jest runs each spec in its own VM context, whose typed-array constructors are not
 * Node's; onnxruntime's native binding creates output tensors with Node's Float32Array,
 * BigInt64Array…, and onnxruntime-common then rejects them ("A float32 tensor's data must be type
 * of function Float32Array()"). Jest's node environment already shares Node's ArrayBuffer and
 * Uint8Array with the context for the same reason; this shares the other typed arrays too, so
 * the code under test sees the realm the native binding writes to. Production runs in one realm.
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
