import { afterEach, describe, expect, it } from '@jest/globals';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { selectBackend, type ModuleImporter } from './backend.js';

const real: ModuleImporter = (specifier) => import(specifier);

/**
 * Simulates installed optional packages: importing one registers the "tensorflow" backend with
 * tfjs-core, as @tensorflow/tfjs-node(-gpu) does (here backed by the cpu kernels).
 */
function withInstalled(...installed: string[]): { importer: ModuleImporter; imported: string[] } {
  const imported: string[] = [];
  const importer: ModuleImporter = async (specifier) => {
    imported.push(specifier);
    if (installed.includes(specifier)) {
      tf.registerBackend('tensorflow', () => new MathBackendCPU(), 3);
      return {};
    }
    return real(specifier);
  };
  return { importer, imported };
}

afterEach(() => {
  if (tf.findBackendFactory('tensorflow') !== null) tf.removeBackend('tensorflow');
});

describe('selectBackend', () => {
  it('falls back to wasm here, where neither tfjs-node package is installed', async () => {
    const choice = await selectBackend();
    expect(choice.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(choice.skipped).toEqual([
      { name: 'tfjs-node-gpu', reason: 'not installed' },
      { name: 'tfjs-node', reason: 'not installed' },
    ]);
    // The wasm kernels work: a small matmul gives the right numbers.
    const product = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]]));
    expect(await product.data()).toEqual(Float32Array.of(11));
  });

  it('prefers tfjs-node-gpu when it is installed', async () => {
    const { importer, imported } = withInstalled('@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node');
    const choice = await selectBackend(importer);
    expect(choice).toEqual({ name: 'tfjs-node-gpu', tfBackend: 'tensorflow', skipped: [] });
    expect(tf.getBackend()).toBe('tensorflow');
    expect(imported).toEqual(['@tensorflow/tfjs-node-gpu']);
  });

  it('takes tfjs-node when only it is installed', async () => {
    const { importer, imported } = withInstalled('@tensorflow/tfjs-node');
    const choice = await selectBackend(importer);
    expect(choice.name).toBe('tfjs-node');
    expect(choice.skipped).toEqual([{ name: 'tfjs-node-gpu', reason: 'not installed' }]);
    expect(tf.getBackend()).toBe('tensorflow');
    expect(imported).toEqual(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']);
  });

  it('skips a package that is installed but broken (e.g. no CUDA libraries) and says why', async () => {
    const importer: ModuleImporter = async (specifier) => {
      if (specifier === '@tensorflow/tfjs-node-gpu')
        throw new Error('libcudart.so.11.0: cannot open shared object file');
      return real(specifier);
    };
    const choice = await selectBackend(importer);
    expect(choice.name).toBe('wasm');
    expect(choice.skipped[0]).toEqual({
      name: 'tfjs-node-gpu',
      reason: 'failed to load: libcudart.so.11.0: cannot open shared object file',
    });
  });

  it('skips a package that loads but registers its backend with another copy of tfjs-core', async () => {
    const importer: ModuleImporter = async (specifier) =>
      specifier === '@tensorflow/tfjs-node' ? {} : real(specifier);
    const choice = await selectBackend(importer);
    expect(choice.name).toBe('wasm');
    expect(choice.skipped[1]).toEqual({
      name: 'tfjs-node',
      reason: 'loaded, but it did not register the "tensorflow" backend with this tfjs-core',
    });
  });

  it('falls back to pure JavaScript when wasm cannot load', async () => {
    const importer: ModuleImporter = async (specifier) => {
      if (specifier === '@tensorflow/tfjs-backend-wasm') throw new Error('WebAssembly is disabled');
      return real(specifier);
    };
    const choice = await selectBackend(importer);
    expect(choice.name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(choice.skipped.map((s) => s.name)).toEqual(['tfjs-node-gpu', 'tfjs-node', 'wasm']);
  });
});
