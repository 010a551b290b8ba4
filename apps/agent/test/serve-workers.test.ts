/**
 * The inference server as worker processes (serve.workers > 1): real worker processes of the
 * agent's build (this test process is their cluster primary, as the agent is), real onnxruntime
 * sessions in each, real HTTP. Every request below opens its own connection, so cluster hands
 * the requests to the workers in turn.
 * Needs `npx tsc -b apps/agent` (npm run build) first; it builds once itself when dist is missing.
 */
import { afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import cluster from 'node:cluster';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { linearRegressionModel } from '@hearth/testing';
import { createLogger } from '../src/logger.js';
import { DEFAULT_SERVE_LIMITS } from '../src/policy/local-policy.js';
import { ServeHost } from '../src/serve/serve-host.js';
import { ensureBuilt, processAlive } from './agent-process.js';
import { waitUntil } from './fake-control-plane.js';

jest.setTimeout(60_000);

const logger = createLogger('silent');
const v1 = linearRegressionModel(); // [1, 2, 4] → 3
const v2 = linearRegressionModel({ intercept: 101 }); // [1, 2, 4] → 103
const corrupt = Uint8Array.from([8, 1, 2, 3]);

const hosts: ServeHost[] = [];
beforeAll(() => ensureBuilt());
// Each test's hosts stop when it ends: a worker another test's host restarts later would change
// the count of forked workers that the last test waits on.
afterEach(async () => {
  for (const host of hosts.splice(0)) await host.close({ force: true });
});

function serveHost(workers: number, port = 0): ServeHost {
  const host = new ServeHost({ address: { host: '127.0.0.1', port }, threads: 1, workers, logger });
  hosts.push(host);
  return host;
}

interface Answer {
  status: number;
  body: { model_version?: string; outputs?: { data: number[] }[]; error?: string };
}

/** One inference on a connection of its own (no keep-alive). */
function infer(endpoint: string, name: string): Promise<Answer> {
  const body = JSON.stringify({
    inputs: [{ name: 'float_input', datatype: 'FP32', shape: [1, 3], data: [1, 2, 4] }],
  });
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${endpoint}/v2/models/${name}/infer`,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Answer['body'] }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const inferMany = (endpoint: string, name: string, n: number) =>
  Promise.all(Array.from({ length: n }, () => infer(endpoint, name)));

/** The pids of every serve worker process this process started (it is their cluster primary). */
const forkedPids = () =>
  Object.values(cluster.workers ?? {})
    .filter((w) => w !== undefined && !w.isDead())
    .map((w) => w!.process.pid!);

describe('ServeHost with serve workers', () => {
  it('serves a deployment from every worker on one port, and counts their requests as one', async () => {
    const host = serveHost(2);
    const endpoint = await host.start();
    expect(endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(host.workerPids()).toHaveLength(2);
    const deployment = await host.deploy('a1', 'churn', '1', v1);
    expect(deployment).toMatchObject({ name: 'churn', version: '1', executionProvider: 'cpu' });

    const answers = await inferMany(endpoint, 'churn', 40);
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(new Set(answers.map((a) => a.body.outputs?.[0].data[0]))).toEqual(new Set([3]));
    expect((await infer(endpoint, 'nope')).status).toBe(404);

    await host.undeploy(deployment); // each worker sends its last numbers before it answers
    expect(host.metricsOf(deployment)).toMatchObject({ windowSeconds: 60, requests: 40, errors: 0 });
    expect(host.metricsOf(deployment).p99Ms).toBeGreaterThan(0);
    expect(host.metrics.snapshot().unroutedRequests).toBe(1);
    expect((await infer(endpoint, 'churn')).status).toBe(404);

    const pids = host.workerPids();
    await host.close();
    expect(pids.filter(processAlive)).toEqual([]);
    await expect(infer(endpoint, 'churn')).rejects.toThrow(/ECONNREFUSED/);
  });

  it("applies the policy's serve.limits in every worker", async () => {
    const host = new ServeHost({
      address: { host: '127.0.0.1', port: 0, limits: { ...DEFAULT_SERVE_LIMITS, maxElements: 2 } },
      threads: 1,
      workers: 2,
      logger,
    });
    hosts.push(host);
    const endpoint = await host.start();
    await host.deploy('a1', 'churn', '1', v1);
    // One connection per request: the port's connections go to both workers.
    const answers = await inferMany(endpoint, 'churn', 10);
    expect(answers.map((a) => a.status)).toEqual(new Array(10).fill(413));
    expect(new Set(answers.map((a) => a.body.error))).toEqual(
      new Set(["input 'float_input': shape [1,3] holds 3 elements; this server takes at most 2 per tensor"]),
    );
  });

  it('switches every worker together, and none when one cannot load the new version', async () => {
    const host = serveHost(3);
    const endpoint = await host.start();
    const first = await host.deploy('a1', 'price', '1', v1);
    await expect(host.deploy('a2', 'price', '2', corrupt)).rejects.toMatchObject({
      code: 'MODEL_LOAD_FAILED',
      message: expect.stringContaining('onnxruntime cannot load the model'),
    });
    const kept = await inferMany(endpoint, 'price', 30);
    expect(new Set(kept.map((a) => `${a.status} v${a.body.model_version}`))).toEqual(new Set(['200 v1']));

    // A new version under a burst of requests: none fails, and once deployed, every worker has it.
    let stop = false;
    const during: Answer[] = [];
    const client = async () => {
      while (!stop) during.push(await infer(endpoint, 'price'));
    };
    const clients = Array.from({ length: 6 }, client);
    await waitUntil(() => during.length >= 30, 10_000, 'requests before the switch');
    const second = await host.deploy('a3', 'price', '2', v2);
    expect(await first.replaced).toBe('2');
    stop = true;
    await Promise.all(clients);
    expect(during.filter((a) => a.status !== 200)).toEqual([]);
    const after = await inferMany(endpoint, 'price', 30);
    expect(new Set(after.map((a) => `v${a.body.model_version} ${a.body.outputs?.[0].data[0]}`))).toEqual(
      new Set(['v2 103']),
    );

    // A first deployment that cannot load leaves nothing behind in any worker.
    await expect(host.deploy('a4', 'broken', '1', corrupt)).rejects.toThrow();
    const broken = await inferMany(endpoint, 'broken', 6);
    expect(new Set(broken.map((a) => a.status))).toEqual(new Set([404]));
    await host.undeploy(second);
  });

  it('replaces a worker that dies with one that serves what is deployed', async () => {
    const host = serveHost(2);
    const endpoint = await host.start();
    await host.deploy('a1', 'steady', '1', v1);
    const [victim, survivor] = host.workerPids();

    process.kill(victim, 'SIGKILL');
    // Once the agent has seen the exit (a connection handed to the worker in the instant it died
    // is lost with it, as with any process that dies), the survivor answers until the replacement runs.
    await waitUntil(() => !host.workerPids().includes(victim), 5_000, 'the exit to be seen');
    const meanwhile = await inferMany(endpoint, 'steady', 10);
    expect(meanwhile.filter((a) => a.status !== 200)).toEqual([]);
    await waitUntil(() => host.workerPids().length === 2, 15_000, 'a replacement worker');
    const replacement = host.workerPids().find((pid) => pid !== survivor)!;
    expect(replacement).not.toBe(victim);

    // With the survivor gone too, the replacement alone answers: it loaded the deployed model.
    process.kill(survivor, 'SIGKILL');
    await waitUntil(() => !host.workerPids().includes(survivor), 5_000, 'the exit to be seen');
    const answers = await inferMany(endpoint, 'steady', 10);
    expect(answers.map((a) => `${a.status} v${a.body.model_version}`)).toEqual(Array(10).fill('200 v1'));
    expect(processAlive(replacement)).toBe(true);
  });

  it('says why it cannot listen, leaves no worker behind, and tries again on the next start', async () => {
    const blocker = http.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as AddressInfo;
    const before = forkedPids();
    const host = serveHost(2, port);
    await expect(host.start()).rejects.toThrow(
      `the inference server cannot listen on 127.0.0.1:${port}: EADDRINUSE`,
    );
    await waitUntil(() => forkedPids().length === before.length, 10_000, 'the failed workers to exit');
    await new Promise((resolve) => blocker.close(resolve));
    expect(await host.start()).toBe(`http://127.0.0.1:${port}`);
    await host.deploy('a1', 'late', '1', v1);
    expect((await infer(`http://127.0.0.1:${port}`, 'late')).status).toBe(200);
  });
});
