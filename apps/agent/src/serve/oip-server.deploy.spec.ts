/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 *
 * Deployments seen through the server: readiness while a model loads or after its load failed,
 * versions replaced under requests in flight, metrics, and a graceful stop. Sessions are real;
 * the loader can hold a load, and a session's runs, until the test opens a gate.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { linearRegressionModel, waitFor } from '@hearth/testing';
import { createLogger } from '../logger.js';
import { ModelRepository, type ModelStateChange } from './model-repository.js';
import { loadModelSession, type ModelSession } from './model-session.js';
import { startOipServer, type OipServer } from './oip-server.js';
import { ServeMetrics } from './serve-metrics.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-oip-deploy-'));
const file = (name: string, bytes: Uint8Array) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
};
/** y = 2a - b + c/2 + 1, and the same + 100: [1, 2, 4] → 3, and 103. */
const models = {
  linear: file('linear.onnx', linearRegressionModel()),
  linearPlus100: file('linear-plus-100.onnx', linearRegressionModel({ intercept: 101 })),
  live: file('live.onnx', linearRegressionModel()),
  slow: file('slow.onnx', linearRegressionModel()),
  stopping: file('stopping.onnx', linearRegressionModel()),
  garbage: file('garbage.onnx', Uint8Array.from([8, 1, 2, 3])),
};

const events: ModelStateChange[] = [];
/** Loads of these files wait until the gate opens. */
const gates = new Map<string, Promise<void>>();
/** Requests on sessions of these files wait in run() until the gate opens: requests held in flight. */
const runGates = new Map<string, Promise<void>>();
const released = new Set<string>();

let repository: ModelRepository;
let metrics: ServeMetrics;
let server: OipServer;

beforeAll(async () => {
  repository = new ModelRepository({
    onStateChange: (change) => events.push(change),
    loadSession: async (source) => {
      const p = source as string; // these tests load files
      await gates.get(p);
      const session = await loadModelSession(p);
      const id = `${path.basename(p)}#${released.size}-${Math.random()}`;
      const wrapped: ModelSession = {
        ...session,
        run: async (feeds, outputs) => {
          await runGates.get(p);
          return session.run(feeds, outputs);
        },
        release: async () => {
          released.add(id);
          await session.release();
        },
      };
      return wrapped;
    },
  });
  metrics = new ServeMetrics();
  server = await startOipServer({
    host: '127.0.0.1',
    port: 0,
    repository,
    metrics,
    logger: createLogger('silent'),
  });
});

afterAll(async () => {
  await server?.close(1000);
  await repository?.close({ force: true });
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

async function call(method: string, url: string, body?: unknown): Promise<Reply> {
  const res = await fetch(url.startsWith('http') ? url : `${server.url}${url}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
}

const infer = (model: string, body: unknown, version?: string, base = server.url) =>
  call('POST', `${base}/v2/models/${model}${version ? `/versions/${version}` : ''}/infer`, body);

const linearInput = (data: unknown) => ({
  inputs: [{ name: 'float_input', shape: [1, 3], datatype: 'FP32', data }],
});

const gate = (gates: Map<string, Promise<void>>, p: string) => {
  let open!: () => void;
  gates.set(p, new Promise<void>((resolve) => (open = resolve)));
  return () => open();
};

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('OIP v2 server: deployments', () => {
  it('is not ready (503) while a model loads, and says why when its load failed', async () => {
    const open = gate(gates, models.slow);
    const loading = repository.load('slow', '1', models.slow);
    expect(await call('GET', '/v2/health/ready')).toMatchObject({ status: 503, body: { ready: false } });
    expect(await call('GET', '/v2/models/slow/ready')).toMatchObject({
      status: 503,
      body: { name: 'slow', ready: false },
    });
    expect(await infer('slow', linearInput([1, 2, 4]))).toMatchObject({
      status: 503,
      body: { error: "model 'slow' version '1' is loading" },
    });
    open();
    await loading;
    expect((await call('GET', '/v2/health/ready')).status).toBe(200);
    expect((await infer('slow', linearInput([1, 2, 4]))).status).toBe(200);

    await expect(repository.load('broken', '1', models.garbage)).rejects.toThrow();
    expect((await call('GET', '/v2/health/ready')).status).toBe(503);
    expect(await infer('broken', linearInput([1, 2, 4]))).toMatchObject({
      status: 503,
      body: {
        error: expect.stringMatching(/^model 'broken' version '1' failed to load: onnxruntime cannot load/),
      },
    });
    await repository.unload('broken');
    expect((await call('GET', '/v2/health/ready')).status).toBe(200);
  });

  it('replaces a version under a burst of requests in flight without failing any', async () => {
    await repository.load('live', '1', models.live);
    const openRuns = gate(runGates, models.live);
    const burst = 40;
    const before = Array.from({ length: burst }, () => infer('live', linearInput([1, 2, 4])));
    await waitFor(() => repository.get('live')?.inFlight === burst, { what: 'the first burst in flight' });

    const releasedBefore = released.size;
    await repository.replace('live', '2', models.linearPlus100);
    expect(await call('GET', '/v2/models/live')).toMatchObject({ body: { versions: ['2'] } });
    // The first burst still runs on version 1, which is therefore not released yet.
    expect(released.size).toBe(releasedBefore);
    const after = await Promise.all(
      Array.from({ length: burst }, () => infer('live', linearInput([1, 2, 4]))),
    );

    openRuns();
    const first = await Promise.all(before);
    const answers = [...first, ...after].map((r) => [r.status, r.body.model_version, outputValue(r)]);
    expect(answers).toEqual([
      ...Array.from({ length: burst }, () => [200, '1', 3]),
      ...Array.from({ length: burst }, () => [200, '2', 103]),
    ]);
    await waitFor(() => released.size === releasedBefore + 1, { what: 'version 1 released' });
    expect(events.filter((e) => e.name === 'live').map((e) => `${e.version}:${e.state}`)).toEqual([
      '1:LOADING',
      '1:READY',
      '2:LOADING',
      '2:READY',
      '1:UNLOADED',
    ]);
    expect(snapshotOf('live', '1')).toMatchObject({ requests: burst, errors: 0 });
    expect(snapshotOf('live', '2')).toMatchObject({ requests: burst, errors: 0 });
  });

  it('keeps answering while versions are swapped back and forth under load', async () => {
    await repository.load('swap', 'a', models.linear);
    const expected: Record<string, number> = { a: 3, b: 103 };
    let stop = false;
    const clients = Array.from({ length: 8 }, async () => {
      const seen: [number, unknown, number][] = [];
      while (!stop) {
        const r = await infer('swap', linearInput([1, 2, 4]));
        seen.push([r.status, r.body.model_version, outputValue(r)]);
      }
      return seen;
    });
    for (const [version, file] of [
      ['b', models.linearPlus100],
      ['a', models.linear],
      ['b', models.linearPlus100],
    ] as const) {
      const served = snapshotOf('swap', version)?.requests ?? 0;
      await repository.replace('swap', version, file);
      await waitFor(() => (snapshotOf('swap', version)?.requests ?? 0) > served, {
        what: `version ${version} serving`,
      });
    }
    stop = true;
    const seen = (await Promise.all(clients)).flat();
    expect(seen.length).toBeGreaterThan(0);
    expect(
      seen.filter(([status, version, y]) => status !== 200 || y !== expected[version as string]),
    ).toEqual([]);
  });
});

describe('OIP v2 server: metrics', () => {
  it('counts the requests and errors of each model version, and latency', async () => {
    await repository.load('counted', '1', models.linear);
    const unroutedBefore = metrics.snapshot().unroutedRequests;
    for (let i = 0; i < 3; i++) expect((await infer('counted', linearInput([1, 2, 4]))).status).toBe(200);
    expect((await infer('counted', '{')).status).toBe(400);
    expect((await infer('counted', linearInput([1]))).status).toBe(400);
    expect((await infer('counted', linearInput([1, 2, 4]), '9')).status).toBe(404);
    expect((await infer('not-served', linearInput([1, 2, 4]))).status).toBe(404);
    expect((await call('GET', '/v2/models/counted')).status).toBe(200); // metadata is not counted

    const counted = snapshotOf('counted', '1');
    expect(counted).toMatchObject({
      requests: 5,
      errors: 2,
      clientErrors: 2,
      serverErrors: 0,
      windowRequests: 3, // the two refused requests are no latency of the model's
    });
    expect(counted?.latencyMs?.p50).toBeGreaterThan(0);
    expect(counted?.latencyMs?.p99).toBeGreaterThanOrEqual(counted?.latencyMs?.p50 ?? Infinity);
    // The unknown version and the unknown model are not any served version's requests.
    expect(metrics.snapshot().unroutedRequests).toBe(unroutedBefore + 2);
  });
});

describe('OIP v2 server: stopping', () => {
  it('finishes the requests in flight before it closes, and takes no new connections', async () => {
    await repository.load('stopping', '1', models.stopping);
    const second = await startOipServer({
      host: '127.0.0.1',
      port: 0,
      repository,
      metrics,
      logger: createLogger('silent'),
    });
    const openRuns = gate(runGates, models.stopping);
    const inFlight = infer('stopping', linearInput([1, 2, 4]), undefined, second.url);
    await waitFor(() => repository.get('stopping')?.inFlight === 1, { what: 'the request in flight' });

    let closed = false;
    const closing = second.close(30_000).then(() => (closed = true));
    await flush();
    await expect(fetch(`${second.url}/v2/health/live`)).rejects.toThrow();
    expect(closed).toBe(false);

    openRuns();
    expect(await inFlight).toMatchObject({ status: 200, body: { model_version: '1' } });
    await closing;
    expect(closed).toBe(true);
  });
});

function outputValue(reply: Reply): number {
  const outputs = reply.body.outputs as { data: number[] }[] | undefined;
  return outputs?.[0]?.data[0] ?? NaN;
}

function snapshotOf(model: string, version: string) {
  return metrics.snapshot().models.find((m) => m.model === model && m.version === version);
}
