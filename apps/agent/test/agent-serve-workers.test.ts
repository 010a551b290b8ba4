/**
 * The real agent process with `--serve-workers 2`: a serve job from this test (playing the
 * control plane over the real nats-server) puts the model on two worker processes behind one
 * port, a newer version replaces it on both, the request numbers of both come back in
 * serve.metrics and on the agent's Prometheus endpoint, and the workers go when the agent does,
 * even when it is killed.
 * Needs `npx tsc -b apps/agent` (npm run build) first; it builds once itself when dist is missing.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { ModelRef } from '@hearth/contracts';
import { linearRegressionModel, metricValue, scrapePrometheus, type PrometheusSample } from '@hearth/testing';
import { makeAgentHome, metricsUrl, processAlive, startAgent, type AgentProcess } from './agent-process.js';
import { FakeControlPlane, waitUntil, writeModel } from './fake-control-plane.js';

jest.setTimeout(60_000);

let cp: FakeControlPlane;
let tmp: string;
let dataDir: string;
let artifactRoot: string;
let agent: AgentProcess;

beforeAll(async () => {
  cp = await FakeControlPlane.start();
  ({ tmp, dataDir, artifactRoot } = makeAgentHome(cp, 'hearth-agent-serve-workers-', (home) => ({
    artifactRoot: home.artifactRoot,
    serve: { host: '127.0.0.1', port: 8600, workers: 1 },
  })));
  // The flags win over the policy: two workers, any free port; a metrics endpoint on any free port.
  agent = await startAgent(dataDir, tmp, [
    '--serve-workers',
    '2',
    '--serve-port',
    '0',
    '--metrics-port',
    '0',
  ]);
});

afterAll(async () => {
  agent?.stop();
  await cp?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const modelRef = (version: string, bytes: Uint8Array) => writeModel(artifactRoot, 'price', version, bytes);

const serveJob = (model: ModelRef) =>
  cp.send({ kind: 'serve', serve: { deploymentId: randomUUID(), model }, timeoutSeconds: null });

/** One inference on a connection of its own; the model's version and answer. */
function infer(endpoint: string): Promise<string> {
  const body = JSON.stringify({
    inputs: [{ name: 'float_input', datatype: 'FP32', shape: [1, 3], data: [1, 2, 4] }],
  });
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${endpoint}/v2/models/price/infer`,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => {
          const answer = JSON.parse(text) as { model_version?: string; outputs?: { data: number[] }[] };
          resolve(`${res.statusCode} v${answer.model_version} ${answer.outputs?.[0].data[0]}`);
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The agent's serve workers: its child processes running serve-worker.js. */
function serveWorkers(): number[] {
  const out = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(agent.proc.pid)]).toString();
  return out
    .split('\n')
    .filter((line) => line.includes('serve-worker.js'))
    .map((line) => Number(line.trim().split(/\s+/)[0]));
}

describe('hearth-agent --serve-workers 2', () => {
  it('serves a deployment and its replacement from two worker processes on one port', async () => {
    const v1Job = await serveJob(modelRef('1', linearRegressionModel()));
    const endpoint = await cp.waitServeReady(v1Job.attemptId, 30_000, agent.log);
    expect(endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(serveWorkers()).toHaveLength(2);
    const before = await Promise.all(Array.from({ length: 20 }, () => infer(endpoint)));
    expect(new Set(before)).toEqual(new Set(['200 v1 3']));

    const v2Job = await serveJob(modelRef('2', linearRegressionModel({ intercept: 101 })));
    expect(await cp.waitServeReady(v2Job.attemptId, 30_000, agent.log)).toBe(endpoint);
    expect(await cp.waitFinished(v1Job.attemptId, 30_000)).toMatchObject({
      outcome: 'SUCCEEDED',
      reason: 'replaced by version 2',
    });
    const after = await Promise.all(Array.from({ length: 20 }, () => infer(endpoint)));
    expect(new Set(after)).toEqual(new Set(['200 v2 103']));
    // Version 1's last report counts the requests both workers answered.
    const last = cp.progress(v1Job.attemptId).at(-1);
    expect(last).toMatchObject({ kind: 'serve.metrics', metrics: { requests: 20, errors: 0 } });
  });

  it('shows both workers’ requests, the served version and the finished deployment on its metrics endpoint', async () => {
    const url = metricsUrl(agent.log());
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const v2 = { model: 'price', version: '2' };
    let samples: PrometheusSample[] = [];
    await waitUntil(
      async () => {
        samples = await scrapePrometheus(url);
        return metricValue(samples, 'hearth_agent_serve_requests_total', { ...v2, code: '200' }) === 20;
      },
      10_000,
      'the 20 requests of version 2 on /metrics',
    );
    expect(metricValue(samples, 'hearth_agent_serve_request_duration_seconds_count', v2)).toBe(20);
    // Version 1 is no longer served: its series are gone, and its serve job ended SUCCEEDED.
    expect(samples.filter((s) => s.labels.version === '1')).toEqual([]);
    expect(metricValue(samples, 'hearth_agent_serve_models', { ...v2, provider: 'cpu' })).toBe(1);
    expect(metricValue(samples, 'hearth_agent_serve_workers')).toBe(2);
    expect(metricValue(samples, 'hearth_agent_attempts', { kind: 'serve', state: 'running' })).toBe(1);
    expect(
      metricValue(samples, 'hearth_agent_jobs_finished_total', { kind: 'serve', outcome: 'SUCCEEDED' }),
    ).toBe(1);
    expect(metricValue(samples, 'hearth_agent_nats_connected')).toBe(1);
    expect(
      metricValue(samples, 'hearth_agent_egress_messages_total', { type: 'job.finished' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      metricValue(samples, 'hearth_agent_egress_messages_total', { type: 'agent.heartbeat' }),
    ).toBeGreaterThan(0);
  });

  it('takes its serve workers with it when it is killed', async () => {
    const workers = serveWorkers();
    expect(workers).toHaveLength(2);
    agent.proc.kill('SIGKILL');
    await agent.exited;
    await waitUntil(() => workers.every((pid) => !processAlive(pid)), 10_000, 'the serve workers to exit');
  });
});
