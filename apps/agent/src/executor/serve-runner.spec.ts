/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 *
 * The serve job on a real ServeHost: what it reports, how it ends when cancelled or replaced.
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';
import { jobDispatch, linearRegressionModel } from '@hearth/testing';
import { createLogger } from '../logger.js';
import type { VerifiedModel } from '../serve/model-file.js';
import { ServeHost } from '../serve/serve-host.js';
import { AgentCounters } from '../telemetry/counters.js';
import { JobStop, type RunOutcome } from './in-process-run.js';
import { ProgressSender, type Progress } from './progress-sender.js';
import { runServe, type ServeJob } from './serve-runner.js';

const logger = createLogger('silent');
const host = new ServeHost({ address: { host: '127.0.0.1', port: 0 }, logger });
afterAll(() => host.close({ force: true }));

function model(intercept: number): VerifiedModel {
  const bytes = linearRegressionModel({ intercept });
  return { bytes, sha256: createHash('sha256').update(bytes).digest('hex'), metadata: {} };
}

function serveJob(name: string, version: string, verified: VerifiedModel): ServeJob {
  return jobDispatch({
    timeoutSeconds: null,
    kind: 'serve',
    serve: {
      deploymentId: randomUUID(),
      model: { name, version, uri: `file:///models/${name}/${version}.onnx`, sha256: verified.sha256 },
    },
  });
}

function start(job: ServeJob, verified: VerifiedModel) {
  const sent: Progress[] = [];
  const progress = new ProgressSender({
    logger,
    counters: new AgentCounters(),
    signal: new AbortController().signal,
    send: async (p) => void sent.push(p),
  });
  const controller = new AbortController();
  const settled: { value?: RunOutcome; error?: unknown } = {};
  const done = runServe(job, verified, {
    host,
    signal: controller.signal,
    progress,
    logger,
    metricsIntervalMs: 50,
  }).then(
    (value) => (settled.value = value),
    (error: unknown) => (settled.error = error),
  );
  return { sent, controller, settled, done: done.then(() => progress.finish()) };
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(check()).toBe(true);
};

const infer = (endpoint: string, name: string) =>
  fetch(`${endpoint}/v2/models/${name}/infer`, {
    method: 'POST',
    body: JSON.stringify({
      inputs: [{ name: 'float_input', datatype: 'FP32', shape: [1, 3], data: [1, 2, 4] }],
    }),
  });

describe('runServe', () => {
  it('reports ready with the endpoint, metrics while it runs, and unloads when cancelled', async () => {
    const verified = model(1);
    const run = start(serveJob('churn', '1', verified), verified);
    await until(() => run.sent.length > 0);
    const ready = run.sent[0];
    expect(ready).toEqual({
      kind: 'serve.ready',
      endpoint: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
      executionProvider: 'cpu',
    });
    const endpoint = (ready as { endpoint: string }).endpoint;
    expect((await infer(endpoint, 'churn')).status).toBe(200);
    await until(() => run.sent.some((p) => p.kind === 'serve.metrics' && p.metrics.requests === 1));

    const stop = new JobStop('CANCELLED', 'cancelled by the control plane');
    run.controller.abort(stop);
    await run.done;
    expect(run.settled.error).toBe(stop);
    expect((await fetch(`${endpoint}/v2/models/churn/ready`)).status).toBe(404);
    expect(run.sent.at(-1)).toMatchObject({ kind: 'serve.metrics', metrics: { requests: 1, errors: 0 } });
    expect(JSON.stringify(run.sent)).not.toContain('float_input');
  });

  it('ends SUCCEEDED when a newer job deploys the same name, leaving the new version served', async () => {
    const first = model(1);
    const second = model(101);
    const older = start(serveJob('price', '1', first), first);
    await until(() => older.sent.length > 0);
    const newer = start(serveJob('price', '2', second), second);
    await older.done;
    expect(older.settled.value).toEqual({ reason: 'replaced by version 2' });
    await until(() => newer.sent.length > 0);
    const endpoint = (newer.sent[0] as { endpoint: string }).endpoint;
    const answer = (await (await infer(endpoint, 'price')).json()) as { model_version: string };
    expect(answer.model_version).toBe('2');
    newer.controller.abort(new JobStop('CANCELLED', 'cancelled'));
    await newer.done;
    expect((await fetch(`${endpoint}/v2/models/price/ready`)).status).toBe(404);
  });
});
