/**
 * The real agent process running every ML job kind against the real nats-server, with this test
 * playing the control plane: train on a generated CSV under a data root, batch_predict with the
 * trained model, serve it over the Open Inference Protocol (infer from here over HTTP), redeploy a
 * new version under a burst of requests, undeploy, and bad input that must fail precisely while
 * the agent keeps taking jobs. A canary planted in the CSV and in infer requests must never
 * appear on the wire or in the egress ledger.
 * Needs `npx tsc -b apps/agent` (npm run build) first; it builds once itself when dist is missing.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import onnx from 'onnx-proto';
import type { JobDispatch, JobFinished, JobProgress, ModelRef, TrainResult } from '@hearth/contracts';
import { makeAgentHome, startAgent, type AgentProcess } from './agent-process.js';
import { FakeControlPlane, waitUntil } from './fake-control-plane.js';

jest.setTimeout(90_000);

const CANARY = `canary-${randomUUID()}`;

let cp: FakeControlPlane;
let tmp: string;
let dataDir: string;
let dataRoot: string;
let artifactRoot: string;
let agent: AgentProcess;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const fileSha256 = (file: string) => sha256(fs.readFileSync(file));

/** Two well separated classes; the `note` column (not a feature) carries the canary. */
function separableCsv(rows: number): string {
  const lines = ['x1,x2,note,label'];
  for (let i = 0; i < rows; i++) {
    const positive = i % 2 === 0;
    const jitter = ((i * 7919) % 100) / 100; // deterministic, in [0, 1)
    const x1 = positive ? 2 + jitter : -2 - jitter;
    const x2 = positive ? 1 - jitter : -1 + jitter;
    lines.push(`${x1.toFixed(3)},${x2.toFixed(3)},${CANARY}-${i},${positive ? 'yes' : 'no'}`);
  }
  return `${lines.join('\n')}\n`;
}

beforeAll(async () => {
  cp = await FakeControlPlane.start();
  ({ tmp, dataDir, artifactRoot } = makeAgentHome(cp, 'hearth-agent-ml-', (home) => {
    dataRoot = path.join(home.tmp, 'datasets');
    fs.mkdirSync(dataRoot);
    return {
      dataRoots: [dataRoot],
      artifactRoot: home.artifactRoot,
      serve: { host: '127.0.0.1', port: 8600 },
    };
  }));
  fs.writeFileSync(path.join(dataRoot, 'train.csv'), separableCsv(400));
  // --serve-port 0 overrides the policy's port: any free port, reported in serve.ready.
  agent = await startAgent(dataDir, tmp, ['--max-jobs', '4', '--serve-port', '0']);
});

afterAll(async () => {
  agent?.stop();
  await cp?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const uri = (file: string) => pathToFileURL(file).href;

function trainJob(overrides: Partial<Extract<JobDispatch, { kind: 'train' }>['train']> = {}) {
  return cp.send({
    kind: 'train',
    train: {
      dataset: { uri: uri(path.join(dataRoot, 'train.csv')) },
      target: 'label',
      features: ['x1', 'x2'],
      task: 'binary',
      model: { type: 'logistic' },
      epochs: 5,
      batchSize: 32,
      learningRate: 0.1,
      validationSplit: 0.2,
      seed: 7,
      ...overrides,
    },
  });
}

const serveJob = (model: ModelRef) =>
  cp.send({ kind: 'serve', serve: { deploymentId: randomUUID(), model }, timeoutSeconds: null });

function progressOf(attemptId: string): JobProgress['progress'][] {
  return cp.progress(attemptId);
}

interface InferAnswer {
  status: number;
  body: { model_version?: string; id?: string; outputs?: { name: string; data: number[] }[]; error?: string };
}

async function infer(endpoint: string, name: string, rows: number[][], id = CANARY): Promise<InferAnswer> {
  const res = await fetch(`${endpoint}/v2/models/${name}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      id,
      inputs: [{ name: 'input', datatype: 'FP32', shape: [rows.length, 2], data: rows.flat() }],
    }),
  });
  return { status: res.status, body: (await res.json()) as InferAnswer['body'] };
}

/** The trained model, and a second version of it (same math, other bytes), for serving. */
let trained: TrainResult;
let v1: ModelRef;
let v2: ModelRef;
let v1Job: JobDispatch;
let v2Job: JobDispatch;
let endpoint: string;

describe('hearth-agent: train, batch_predict and serve jobs', () => {
  it('trains on a CSV under a data root, streaming its backend and each epoch, and reports the model', async () => {
    const job = await trainJob();
    const finished = await cp.waitFinished(job.attemptId, 60_000);
    expect(finished).toMatchObject({
      outcome: 'SUCCEEDED',
      exitCode: null,
      reason: null,
      result: { kind: 'train' },
    });
    trained = (finished.result as { kind: 'train'; train: TrainResult }).train;

    const progress = progressOf(job.attemptId);
    expect(progress[0]).toEqual({ kind: 'train.backend', backend: 'wasm' });
    expect(progress.slice(1).map((p) => (p.kind === 'train.epoch' ? p.metrics.epoch : p.kind))).toEqual([
      1, 2, 3, 4, 5,
    ]);
    expect(trained.metrics).toEqual((progress.at(-1) as { metrics: unknown }).metrics);
    expect(trained.metrics.auc).toBeGreaterThan(0.95);
    expect(trained).toMatchObject({ backend: 'wasm', featureNames: ['x1', 'x2'], labels: ['no', 'yes'] });
    expect(trained.datasetFingerprint).toEqual({
      sha256: fileSha256(path.join(dataRoot, 'train.csv')),
      rows: 400,
    });

    // The artifacts exist where the result says, with the hashes and sizes it says.
    const attemptDir = path.join(artifactRoot, job.jobId, job.attemptId);
    expect(trained.artifacts.map((a) => [a.format, fileURLToPath(a.uri)])).toEqual([
      ['onnx', path.join(attemptDir, 'model.onnx')],
      ['tfjs', path.join(attemptDir, 'tfjs', 'model.json')],
    ]);
    for (const artifact of trained.artifacts) {
      expect(artifact.sha256).toBe(fileSha256(fileURLToPath(artifact.uri)));
    }
    expect(trained.artifacts[0].sizeBytes).toBe(fs.statSync(fileURLToPath(trained.artifacts[0].uri)).size);

    const onnxPath = fileURLToPath(trained.artifacts[0].uri);
    v1 = { name: 'churn', version: '1', uri: uri(onnxPath), sha256: trained.artifacts[0].sha256 };
    // Version 2: the same model under other bytes (one more metadata entry), in the artifact root.
    const model = onnx.onnx.ModelProto.decode(fs.readFileSync(onnxPath));
    model.metadataProps = [...(model.metadataProps ?? []), { key: 'release', value: '2' }];
    const v2Bytes = onnx.onnx.ModelProto.encode(model).finish();
    const v2Path = path.join(artifactRoot, 'churn-v2.onnx');
    fs.writeFileSync(v2Path, v2Bytes);
    v2 = { name: 'churn', version: '2', uri: uri(v2Path), sha256: sha256(v2Bytes) };
  });

  it('cancels a running train job between batches, leaving no artifacts', async () => {
    const job = await trainJob({ epochs: 1000 });
    await waitUntil(
      () => progressOf(job.attemptId).some((p) => p.kind === 'train.epoch'),
      30_000,
      'an epoch',
    );
    await cp.cancel(job);
    expect(await cp.waitFinished(job.attemptId)).toMatchObject({
      outcome: 'CANCELLED',
      reason: 'cancelled by the control plane',
    });
    expect(cp.finished(job.attemptId)?.result).toBeUndefined();
    expect(fs.existsSync(path.join(artifactRoot, job.jobId))).toBe(false);
  });

  it('batch-predicts with the trained model and reports only counts, timing and hashes', async () => {
    const scorePath = path.join(dataRoot, 'score.csv');
    // Other column order and an extra column: the model's recorded feature names pick x1, x2.
    fs.writeFileSync(scorePath, `id,x2,x1\n1,1.0,2.5\n2,-1.0,-2.5\n3,0.9,2.1\n`);
    const job = await cp.send({
      kind: 'batch_predict',
      batchPredict: { model: v1, input: { uri: uri(scorePath) } },
    });
    const finished = await cp.waitFinished(job.attemptId, 30_000);
    expect(finished).toMatchObject({ outcome: 'SUCCEEDED', result: { kind: 'batch_predict' } });
    const result = (finished.result as Extract<JobFinished['result'], { kind: 'batch_predict' }>)
      .batchPredict;
    const outPath = path.join(artifactRoot, job.jobId, job.attemptId, 'predictions.jsonl');
    expect(result).toEqual({
      rows: 3,
      durationMs: expect.any(Number),
      input: { sha256: fileSha256(scorePath), rows: 3 },
      output: {
        uri: uri(outPath),
        sha256: fileSha256(outPath),
        sizeBytes: fs.statSync(outPath).size,
        format: 'jsonl',
      },
    });
    const predictions = fs
      .readFileSync(outPath, 'utf8')
      .trimEnd()
      .split('\n')
      .map((line) => (JSON.parse(line) as { output: number[] }).output[0]);
    expect(predictions).toHaveLength(3);
    expect(predictions[0]).toBeGreaterThan(0.9); // P(yes)
    expect(predictions[1]).toBeLessThan(0.1);
    expect(predictions[2]).toBeGreaterThan(0.9);
    expect(progressOf(job.attemptId)).toEqual([]);
  });

  it('serves the model over the Open Inference Protocol and reports where', async () => {
    v1Job = await serveJob(v1);
    endpoint = await cp.waitServeReady(v1Job.attemptId);
    expect(endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(endpoint).not.toBe('http://127.0.0.1:8600'); // --serve-port 0 won over the policy
    expect(progressOf(v1Job.attemptId)[0]).toEqual({
      kind: 'serve.ready',
      endpoint,
      executionProvider: 'cpu',
    });
    expect((await fetch(`${endpoint}/v2/models/churn/ready`)).status).toBe(200);
    const answer = await infer(endpoint, 'churn', [
      [2.5, 1],
      [-2.5, -1],
    ]);
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ model_version: '1', id: CANARY, outputs: [{ name: 'output' }] });
    const [yes, no] = answer.body.outputs![0].data;
    expect(yes).toBeGreaterThan(0.9);
    expect(no).toBeLessThan(0.1);
    expect(cp.finished(v1Job.attemptId)).toBeUndefined(); // a deployment runs until it is ended
  });

  it('redeploys a new version under a burst of requests without failing one', async () => {
    let stop = false;
    const answers: InferAnswer[] = [];
    const failures: string[] = [];
    const client = async () => {
      while (!stop) {
        try {
          answers.push(await infer(endpoint, 'churn', [[2.5, 1]]));
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const clients = Array.from({ length: 8 }, client);
    await waitUntil(() => answers.length >= 50, 10_000, 'requests before the swap');

    v2Job = await serveJob(v2);
    await cp.waitServeReady(v2Job.attemptId);
    const older = await cp.waitFinished(v1Job.attemptId, 30_000);
    const before = answers.length;
    await waitUntil(() => answers.length >= before + 50, 10_000, 'requests after the swap');
    stop = true;
    await Promise.all(clients);

    expect(older).toMatchObject({ outcome: 'SUCCEEDED', reason: 'replaced by version 2' });
    expect(failures).toEqual([]);
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    const versions = answers.map((a) => a.body.model_version);
    expect(new Set(versions)).toEqual(new Set(['1', '2']));
    expect(versions.at(-1)).toBe('2');
    expect(versions.lastIndexOf('1')).toBeLessThan(versions.indexOf('2') + 8 * 2); // switched once, not back and forth
    // The older deployment's last report: its own request numbers, nothing else.
    const last = progressOf(v1Job.attemptId).at(-1);
    expect(last?.kind).toBe('serve.metrics');
    expect(last?.kind === 'serve.metrics' && last.metrics.requests).toBeGreaterThanOrEqual(50);
  });

  it("ignores the replaced job's cancel, and unloads the model when the current one is cancelled", async () => {
    await cp.cancel(v1Job);
    await new Promise((r) => setTimeout(r, 500));
    expect((await fetch(`${endpoint}/v2/models/churn/ready`)).status).toBe(200);
    expect((await infer(endpoint, 'churn', [[2.5, 1]])).body.model_version).toBe('2');

    await cp.cancel(v2Job);
    expect(await cp.waitFinished(v2Job.attemptId)).toMatchObject({
      outcome: 'CANCELLED',
      reason: 'cancelled by the control plane',
    });
    const ready = await fetch(`${endpoint}/v2/models/churn/ready`);
    expect(ready.status).toBe(404);
    expect(await ready.json()).toEqual({
      error: expect.stringContaining("model 'churn' is not served here"),
    });
    const last = progressOf(v2Job.attemptId).at(-1);
    expect(last).toMatchObject({ kind: 'serve.metrics', metrics: { windowSeconds: 60, errors: 0 } });
  });

  describe('bad input: FAILED with a precise reason, and the agent takes the next job', () => {
    it('refuses a dataset outside the data roots without claiming the job', async () => {
      const outside = path.join(tmp, 'outside.csv');
      fs.writeFileSync(outside, separableCsv(10));
      const job = await trainJob({ dataset: { uri: uri(outside) } });
      const finished = await cp.waitFinished(job.attemptId);
      expect(finished.outcome).toBe('FAILED');
      expect(finished.reason).toBe(
        `the dataset ${uri(outside)} is outside the data roots allowed on this agent (${dataRoot}); ` +
          `move it under one of them or add its directory to "dataRoots" in ${path.join(dataDir, 'policy.json')}`,
      );
      expect(cp.claims.some((c) => c.attemptId === job.attemptId)).toBe(false);
    });

    it('fails a train job whose target column is missing', async () => {
      const job = await trainJob({ target: 'churned' });
      expect(await cp.waitFinished(job.attemptId)).toMatchObject({
        outcome: 'FAILED',
        reason: `the target column "churned" is not in the dataset's header (line 1, 4 columns; the agent's log lists them). Does the file start with a header row?`,
      });
    });

    it('refuses a corrupt ONNX file and a model whose sha256 is not the pinned one', async () => {
      const garbage = Buffer.from('this is not an ONNX model at all');
      const corruptPath = path.join(artifactRoot, 'corrupt.onnx');
      fs.writeFileSync(corruptPath, garbage);
      const corrupt = await serveJob({
        name: 'broken',
        version: '1',
        uri: uri(corruptPath),
        sha256: sha256(garbage),
      });
      const corruptFinished = await cp.waitFinished(corrupt.attemptId);
      expect(corruptFinished.outcome).toBe('FAILED');
      expect(corruptFinished.reason).toMatch(
        new RegExp(`^the model ${uri(corruptPath).replace(/[.]/g, '\\.')} is not a valid ONNX model: `),
      );

      const pinned = 'e'.repeat(64);
      const mismatch = await cp.send({
        kind: 'batch_predict',
        batchPredict: {
          model: { ...v1, sha256: pinned },
          input: { uri: uri(path.join(dataRoot, 'score.csv')) },
        },
      });
      expect(await cp.waitFinished(mismatch.attemptId)).toMatchObject({
        outcome: 'FAILED',
        reason:
          `the model ${v1.uri} has sha256 ${v1.sha256}, not the ${pinned} this job pins: ` +
          'the file changed since that model version was registered',
      });
      expect((await fetch(`${endpoint}/v2/models/broken/ready`)).status).toBe(404);
    });

    it('is still running and takes the next job', async () => {
      const job = await cp.dispatch(['node', '-e', 'console.log("after the bad input")']);
      expect(await cp.waitFinished(job.attemptId)).toMatchObject({ outcome: 'SUCCEEDED' });
      expect(agent.proc.exitCode).toBeNull();
      expect((await fetch(`${endpoint}/v2/health/live`)).status).toBe(200);
    });
  });

  it('never sent a dataset row or a request body: the canary is on no message and in no ledger line', () => {
    expect(cp.invalidUp).toEqual([]);
    expect(cp.wire.length).toBeGreaterThan(20);
    expect(cp.wire.filter((m) => m.includes('canary-'))).toEqual([]);
    const ledger = fs.readFileSync(path.join(dataDir, 'egress.ledger.jsonl'), 'utf8');
    expect(ledger).toContain('"type":"job.progress"');
    expect(ledger).not.toContain('canary-');
    expect(agent.log()).not.toContain(CANARY);
  });

  it('on SIGTERM gives its deployments back at once (job.released "agent stopping") and exits 0', async () => {
    const job = await serveJob(v1);
    await cp.waitServeReady(job.attemptId);
    const started = Date.now();
    agent.proc.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000); // not the 30 s drain timeout
    expect(cp.finished(job.attemptId)).toBeUndefined();
    expect(cp.released(job.attemptId)).toMatchObject({ reason: 'agent stopping' });
    await expect(fetch(`${endpoint}/v2/health/live`)).rejects.toThrow();
  });
});
