/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { linearRegressionModel, treeEnsembleRegressorModel } from '@hearth/testing';
import { ModelRepository, type ModelStateChange } from './model-repository.js';
import { loadModelSession, type ModelSession } from './model-session.js';
import { ServeError } from './serve.errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-model-repository-'));
const file = (name: string, bytes: Uint8Array) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
};
const linearV1 = file('linear-v1.onnx', linearRegressionModel());
const linearV2 = file('linear-v2.onnx', linearRegressionModel({ intercept: 101 }));
const trees = file('trees.onnx', treeEnsembleRegressorModel());
const garbage = file('garbage.onnx', Uint8Array.from([8, 1, 2, 3]));

const repositories: ModelRepository[] = [];
afterAll(async () => {
  await Promise.all(repositories.map((r) => r.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A repository on real sessions that records releases and can hold a load until a gate opens. */
function setup() {
  const released = new Set<ModelSession>();
  const gates = new Map<string, Promise<void>>();
  const events: ModelStateChange[] = [];
  const repository = new ModelRepository({
    onStateChange: (change) => events.push(change),
    loadSession: async (source) => {
      const p = source as string; // these tests load files
      await gates.get(p);
      const session = await loadModelSession(p);
      const tracked: ModelSession = {
        ...session,
        release: async () => {
          released.add(tracked);
          await session.release();
        },
      };
      return tracked;
    },
  });
  repositories.push(repository);
  const gate = (p: string) => {
    let open!: () => void;
    gates.set(p, new Promise<void>((resolve) => (open = resolve)));
    return () => open();
  };
  const states = (name: string) =>
    events.filter((e) => e.name === name).map((e) => `${e.version}:${e.state}`);
  return { repository, released, gate, states };
}

async function predict(repository: ModelRepository, name: string, version?: string) {
  const lease = repository.acquire(name, version);
  try {
    const x = new ort.Tensor('float32', Float32Array.from([1, 2, 4]), [1, 3]);
    const out = await lease.session.run({ float_input: x }, ['variable']);
    return { version: lease.version, y: (out.variable.data as Float32Array)[0] };
  } finally {
    lease.release();
  }
}

function thrown(fn: () => unknown): ServeError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ServeError);
    return err as ServeError;
  }
  throw new Error('expected a ServeError');
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('ModelRepository', () => {
  it('loads a model, reports LOADING then READY, and serves it by name and by version', async () => {
    const { repository, states } = setup();
    const status = await repository.load('linear', '1', linearV1);
    expect(status).toEqual({
      name: 'linear',
      version: '1',
      state: 'READY',
      executionProvider: 'cpu',
      error: null,
      inFlight: 0,
    });
    expect(states('linear')).toEqual(['1:LOADING', '1:READY']);
    expect(await predict(repository, 'linear')).toEqual({ version: '1', y: 3 });
    expect(await predict(repository, 'linear', '1')).toEqual({ version: '1', y: 3 });
    expect(repository.allReady()).toBe(true);
  });

  it('answers NOT_FOUND for an unknown name or version, and refuses to load a name twice', async () => {
    const { repository } = setup();
    await repository.load('trees', '7', trees);
    expect(thrown(() => repository.acquire('nope'))).toMatchObject({
      code: 'NOT_FOUND',
      message: "model 'nope' is not served here",
    });
    expect(thrown(() => repository.acquire('trees', '8'))).toMatchObject({
      code: 'NOT_FOUND',
      message: "model 'trees' has no version '8' (serving '7')",
    });
    await expect(repository.load('trees', '8', trees)).rejects.toMatchObject({ code: 'INVALID_OPERATION' });
    await expect(repository.load('../etc', '1', trees)).rejects.toMatchObject({ code: 'INVALID_OPERATION' });
  });

  it('keeps a failed load visible as FAILED (503 with the reason) until it is loaded again', async () => {
    const { repository, states } = setup();
    await expect(repository.load('broken', '1', garbage)).rejects.toMatchObject({
      code: 'MODEL_LOAD_FAILED',
    });
    expect(repository.get('broken')).toMatchObject({
      state: 'FAILED',
      error: expect.stringContaining('the file does not parse as an ONNX model'),
    });
    expect(thrown(() => repository.acquire('broken'))).toMatchObject({
      code: 'NOT_READY',
      message: expect.stringMatching(/^model 'broken' version '1' failed to load: onnxruntime cannot load/),
    });
    expect(repository.allReady()).toBe(false);

    await repository.load('broken', '2', linearV1);
    expect(states('broken')).toEqual(['1:LOADING', '1:FAILED', '2:LOADING', '2:READY']);
    expect(await predict(repository, 'broken')).toEqual({ version: '2', y: 3 });
    expect(repository.allReady()).toBe(true);
  });

  it('is NOT_READY while the first version loads', async () => {
    const { repository, gate } = setup();
    const open = gate(trees);
    const loading = repository.load('slow', '1', trees);
    expect(thrown(() => repository.acquire('slow'))).toMatchObject({
      code: 'NOT_READY',
      message: "model 'slow' version '1' is loading",
    });
    expect(repository.allReady()).toBe(false);
    open();
    await loading;
    const lease = repository.acquire('slow');
    expect(lease.version).toBe('1');
    lease.release();
  });

  it('replaces a version: the old one serves until the switch and is released after its last request', async () => {
    const { repository, released, gate, states } = setup();
    await repository.load('m', '1', linearV1);
    const held = repository.acquire('m');

    const open = gate(linearV2);
    const replacing = repository.replace('m', '2', linearV2);
    await flush();
    // While version 2 loads, requests still go to version 1; asking for 2 explicitly is NOT_READY.
    expect(await predict(repository, 'm')).toEqual({ version: '1', y: 3 });
    expect(thrown(() => repository.acquire('m', '2')).code).toBe('NOT_READY');
    expect(repository.list().map((s) => `${s.version}:${s.state}`)).toEqual(['1:READY', '2:LOADING']);

    open();
    await replacing;
    expect(await predict(repository, 'm')).toEqual({ version: '2', y: 103 });
    expect(thrown(() => repository.acquire('m', '1')).code).toBe('NOT_FOUND');

    // The request that was running on version 1 can still use it: its session is not released.
    expect(released.has(held.session)).toBe(false);
    const y = await held.session.run(
      { float_input: new ort.Tensor('float32', Float32Array.from([0, 0, 0]), [1, 3]) },
      ['variable'],
    );
    expect((y.variable.data as Float32Array)[0]).toBe(1);
    held.release();
    await flush();
    expect(released.has(held.session)).toBe(true);
    expect(states('m')).toEqual(['1:LOADING', '1:READY', '2:LOADING', '2:READY', '1:UNLOADED']);
  });

  it('keeps serving the old version when the new one fails to load', async () => {
    const { repository, states } = setup();
    await repository.load('m', '1', linearV1);
    await expect(repository.replace('m', '2', garbage)).rejects.toMatchObject({ code: 'MODEL_LOAD_FAILED' });
    expect(await predict(repository, 'm')).toEqual({ version: '1', y: 3 });
    expect(repository.list().map((s) => `${s.version}:${s.state}`)).toEqual(['1:READY']);
    expect(states('m')).toEqual(['1:LOADING', '1:READY', '2:LOADING', '2:FAILED']);
  });

  it('switches only once beforeSwitch resolves, and drops the new version when it rejects', async () => {
    const { repository, released, states } = setup();
    await repository.load('price', '1', linearV1);
    let commit!: () => void;
    let seen: string | undefined;
    const switching = repository.replace('price', '2', linearV2, (loaded) => {
      seen = `${loaded.version}:${loaded.state}`;
      return new Promise<void>((resolve) => (commit = resolve));
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toBe('2:LOADING'); // loaded, not yet switched to
    expect(await predict(repository, 'price')).toEqual({ version: '1', y: 3 });
    commit();
    await switching;
    expect(await predict(repository, 'price')).toEqual({ version: '2', y: 103 });

    const before = released.size;
    await expect(
      repository.replace('price', '3', linearV1, () =>
        Promise.reject(new Error('worker 2 could not load it')),
      ),
    ).rejects.toThrow('worker 2 could not load it');
    expect(await predict(repository, 'price')).toEqual({ version: '2', y: 103 });
    expect(released.size).toBe(before + 1); // version 3's session, released unused
    expect(states('price').slice(-2)).toEqual(['3:LOADING', '3:FAILED']);
    expect(repository.list().map((m) => `${m.version}:${m.state}`)).toEqual(['2:READY']);
  });

  it('runs operations on one name in the order they were called', async () => {
    const { repository, states } = setup();
    await repository.load('m', '1', linearV1);
    const results = await Promise.all([
      repository.replace('m', '2', linearV2),
      repository.replace('m', '3', linearV1),
    ]);
    expect(results.map((r) => r.version)).toEqual(['2', '3']);
    expect(repository.get('m')).toMatchObject({ version: '3', state: 'READY' });
    expect(states('m').filter((s) => s.endsWith('READY'))).toEqual(['1:READY', '2:READY', '3:READY']);
  });

  it('unloads once the requests in flight are done; the name is then unknown', async () => {
    const { repository, released, states } = setup();
    await repository.load('m', '1', linearV1);
    const held = repository.acquire('m');
    let unloaded = false;
    const unloading = repository.unload('m').then(() => (unloaded = true));
    await flush();
    expect(thrown(() => repository.acquire('m')).code).toBe('NOT_FOUND');
    expect(unloaded).toBe(false);
    expect(released.has(held.session)).toBe(false);

    held.release();
    held.release(); // idempotent
    await unloading;
    expect(released.has(held.session)).toBe(true);
    expect(states('m')).toEqual(['1:LOADING', '1:READY', '1:UNLOADED']);
    expect(repository.list()).toEqual([]);
  });

  it('closes at once when forced, even with a request still holding a version', async () => {
    const { repository, released, states } = setup();
    await repository.load('m', '1', linearV1);
    const held = repository.acquire('m');
    await repository.close({ force: true });
    expect(released.has(held.session)).toBe(true);
    expect(states('m')).toEqual(['1:LOADING', '1:READY', '1:UNLOADED']);
    held.release(); // late: harmless
    expect(repository.list()).toEqual([]);
    expect(repository.allReady()).toBe(true);
  });
});
