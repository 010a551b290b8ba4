/**
 * The ML workflow end to end, with the real control plane, a real agent and a private nats-server:
 * train a logistic model on the agent (data under the agent's data root), register it automatically,
 * deploy it, call the agent's Open Inference Protocol endpoint, batch-predict, undeploy. And the data
 * boundary: a unique string planted in the training and scoring files appears in no NATS message
 * (everything on `>` is recorded) and in no control-plane table.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  createOrganization,
  freePort,
  createTestDatabase,
  GraphQLClient,
  joinAgent,
  query,
  runAgent,
  startControlPlane,
  waitFor,
  waitForJob,
  type ControlPlane,
  type TestDatabase,
} from '@hearth/testing';
import type { Proc } from '@hearth/testing';
import { startNatsServer, type RunningNatsServer } from '../src/platform/messaging/nats-server.js';

const CANARY = `canary-${randomUUID()}`;
const dir = mkdtempSync(join(tmpdir(), 'hearth-ml-e2e-'));
const dataRoot = join(dir, 'data');
const artifactRoot = join(dir, 'artifacts');
let nats: RunningNatsServer;
let tap: NatsConnection;
const seen: string[] = [];
let db: TestDatabase;
let cp: ControlPlane;
let agent: Proc;
let api: GraphQLClient;
let servePort: number;
const agentDir = join(dir, 'agent');

/** Two well separated classes in two features, plus a free-text column the model never uses. */
function separableCsv(rows: number, seed: number): string {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const lines = ['x1,x2,note,label'];
  for (let i = 0; i < rows; i++) {
    const label = i % 2;
    const centre = label ? 2 : -2;
    lines.push(
      `${(centre + rand()).toFixed(4)},${(centre + rand()).toFixed(4)},"${CANARY} row ${i}",${label ? 'yes' : 'no'}`,
    );
  }
  return lines.join('\n') + '\n';
}

beforeAll(async () => {
  mkdirSync(dataRoot);
  mkdirSync(artifactRoot);
  writeFileSync(join(dataRoot, 'train.csv'), separableCsv(400, 7));
  writeFileSync(join(dataRoot, 'score.csv'), separableCsv(50, 11));
  nats = await startNatsServer({ port: 0, host: '127.0.0.1', dir: join(dir, 'nats') });
  tap = await connect({ servers: nats.url });
  tap.subscribe('>', {
    callback: (_err, msg) => {
      seen.push(`${msg.subject} ${new TextDecoder().decode(msg.data)}`);
    },
  });
  db = await createTestDatabase();
  cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL: nats.url });
  const org = await createOrganization(db.appUrl, 'ML Org');
  api = new GraphQLClient(cp.graphqlUrl, org.adminToken);
  const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
    `mutation { createJoinToken { token } }`,
  );
  const joined = await joinAgent(cp.url, createJoinToken.token, { dataDir: agentDir });
  if (joined.code !== 0) throw new Error(joined.stderr);
  servePort = await freePort();
  writeFileSync(
    join(agentDir, 'policy.json'),
    JSON.stringify({ dataRoots: [dataRoot], artifactRoot, serve: { host: '127.0.0.1', port: servePort } }),
  );
  agent = runAgent(agentDir);
  await waitFor(
    async () =>
      (await api.ok<{ agents: { state: string }[] }>(`{ agents { state } }`)).agents[0]?.state === 'ONLINE',
    {
      what: 'the agent online',
    },
  );
});

afterAll(async () => {
  await agent?.stop();
  await cp?.stop();
  await tap?.close();
  await nats?.stop();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

interface Job {
  id: string;
  state: string;
  stateReason: string | null;
  backend: string | null;
  trainEpochs: { epoch: number; loss: number; auc: number | null; accuracy: number | null }[];
  result: string | null;
}
const TERMINAL = ['SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'];
const JOB_FIELDS = `id state stateReason backend trainEpochs { epoch loss auc accuracy } result`;

let versionId: string;
let modelName: string;

describe('train → register → deploy → infer → batch-predict → undeploy', () => {
  it('trains a logistic model on the agent to AUC > 0.95 and registers it', async () => {
    const { submitJob } = await api.ok<{ submitJob: { id: string } }>(
      `mutation($t: TrainJobInput!) { submitJob(input: { kind: TRAIN, train: $t }) { id } }`,
      {
        t: {
          modelName: 'churn',
          datasetUri: `file://${join(dataRoot, 'train.csv')}`,
          target: 'label',
          features: ['x1', 'x2'],
          task: 'BINARY',
          model: 'LOGISTIC',
          epochs: 30,
          learningRate: 0.1,
          seed: 42,
        },
      },
    );
    const job = await waitForJob<Job>(api, submitJob.id, TERMINAL, JOB_FIELDS, 120_000);
    expect(job).toMatchObject({
      state: 'SUCCEEDED',
      backend: expect.stringMatching(/^(wasm|cpu|tfjs-node|tfjs-node-gpu)$/),
    });
    expect(job.stateReason).toContain('registered churn v1');
    expect(job.trainEpochs).toHaveLength(30);
    expect(job.trainEpochs.at(-1)!.auc).toBeGreaterThan(0.95);

    const { models } = await api.ok<{
      models: {
        name: string;
        versions: {
          id: string;
          version: number;
          source: string;
          datasetFingerprint: { rows: number };
          featureNames: string[];
          labels: string[];
          artifacts: { format: string; uri: string }[];
        }[];
      }[];
    }>(
      `{ models { name versions { id version source datasetFingerprint { rows } featureNames labels artifacts { format uri } } } }`,
    );
    expect(models).toHaveLength(1);
    const [v] = models[0].versions;
    expect(v).toMatchObject({
      version: 1,
      source: 'TRAIN',
      datasetFingerprint: { rows: 400 },
      featureNames: ['x1', 'x2'],
      labels: ['no', 'yes'],
    });
    expect(v.artifacts.map((a) => a.format).sort()).toEqual(['onnx', 'tfjs']);
    expect(v.artifacts.every((a) => a.uri.startsWith(`file://${artifactRoot}/`))).toBe(true);
    versionId = v.id;
    modelName = models[0].name;
  });

  let deploymentId: string;
  let endpoint: string;

  it('deploys it and answers Open Inference Protocol requests on the agent', async () => {
    const { deployModel } = await api.ok<{ deployModel: { id: string; state: string } }>(
      `mutation($v: ID!) { deployModel(input: { versionId: $v }) { id state } }`,
      { v: versionId },
    );
    deploymentId = deployModel.id;
    const ready = await waitFor(
      async () => {
        const { deployment } = await api.ok<{
          deployment: { state: string; endpoint: string | null; stateReason: string | null };
        }>(`query($id: ID!) { deployment(id: $id) { state endpoint stateReason } }`, { id: deploymentId });
        if (deployment.state === 'FAILED') throw new Error(`deployment failed: ${deployment.stateReason}`);
        return deployment.state === 'READY' ? deployment : undefined;
      },
      { timeoutMs: 60_000, what: 'the deployment READY' },
    );
    endpoint = ready.endpoint!;
    expect(endpoint).toBe(`http://127.0.0.1:${servePort}`);
    const res = await fetch(`${endpoint}/v2/models/${modelName}/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        id: 'r1',
        inputs: [{ name: 'input', shape: [2, 2], datatype: 'FP32', data: [-2, -2, 2, 2] }],
      }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { model_name: string; id: string; outputs: { data: number[] }[] };
    expect(body).toMatchObject({ model_name: modelName, id: 'r1' });
    const p = body.outputs[0].data;
    expect(p[0]).toBeLessThan(0.1); // P(yes) far on the "no" side
    expect(p[p.length - 1]).toBeGreaterThan(0.9);

    const bad = await fetch(`${endpoint}/v2/models/${modelName}/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'input', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }),
    });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: expect.any(String) });
  });

  it('redeploys a new version in place without failing requests in flight', async () => {
    const { modelVersion } = await api.ok<{
      modelVersion: { artifacts: { format: string; uri: string; sha256: string; sizeBytes: number }[] };
    }>(`query($id: ID!) { modelVersion(id: $id) { artifacts { format uri sha256 sizeBytes } } }`, {
      id: versionId,
    });
    const onnx = modelVersion.artifacts.find((a) => a.format === 'onnx')!;
    // The same file registered again (as a command job's export would be): version 2.
    const { registerModelVersion } = await api.ok<{ registerModelVersion: { id: string; version: number } }>(
      `mutation($i: RegisterModelVersionInput!) { registerModelVersion(input: $i) { id version } }`,
      { i: { modelName, uri: onnx.uri, sha256: onnx.sha256, sizeBytes: onnx.sizeBytes } },
    );
    expect(registerModelVersion.version).toBe(2);
    const { deployment: before } = await api.ok<{ deployment: { jobId: string } }>(
      `query($id: ID!) { deployment(id: $id) { jobId } }`,
      { id: deploymentId },
    );

    let stop = false;
    const statuses: number[] = [];
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!stop) {
          const r = await fetch(`${endpoint}/v2/models/${modelName}/infer`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              inputs: [{ name: 'input', shape: [1, 2], datatype: 'FP32', data: [1, 1] }],
            }),
          });
          statuses.push(r.status);
          await r.arrayBuffer();
        }
      }),
    );
    const { deployModel } = await api.ok<{ deployModel: { id: string } }>(
      `mutation($v: ID!) { deployModel(input: { versionId: $v }) { id } }`,
      { v: registerModelVersion.id },
    );
    expect(deployModel.id).toBe(deploymentId); // the same deployment, now on version 2
    await waitFor(
      async () => {
        const { deployment } = await api.ok<{ deployment: { state: string; version: { version: number } } }>(
          `query($id: ID!) { deployment(id: $id) { state version { version } } }`,
          { id: deploymentId },
        );
        return deployment.state === 'READY' && deployment.version.version === 2;
      },
      { timeoutMs: 60_000, what: 'version 2 READY' },
    );
    const old = await waitForJob<Job>(api, before.jobId, TERMINAL, JOB_FIELDS, 30_000);
    stop = true;
    await load;
    expect(old).toMatchObject({ state: 'SUCCEEDED', stateReason: 'replaced by version 2' });
    expect(statuses.length).toBeGreaterThan(10);
    expect(statuses.filter((x) => x !== 200)).toEqual([]);
    const ready = await (await fetch(`${endpoint}/v2/models/${modelName}`)).json();
    expect(ready).toMatchObject({ name: modelName, versions: ['2'] });
  });

  it('moves versions through stages, archiving the production one on promotion', async () => {
    const { models } = await api.ok<{ models: { versions: { id: string; version: number }[] }[] }>(
      `{ models { versions { id version } } }`,
    );
    const [v2, v1] = models[0].versions;
    const stage = `mutation($id: ID!, $s: ModelStage!) { transitionModelVersionStage(versionId: $id, stage: $s, archiveExisting: true) { stage } }`;
    await api.ok(stage, { id: v1.id, s: 'PRODUCTION' });
    await api.ok(stage, { id: v2.id, s: 'PRODUCTION' });
    const after = await api.ok<{ models: { versions: { version: number; stage: string }[] }[] }>(
      `{ models { versions { version stage } } }`,
    );
    expect(after.models[0].versions).toEqual([
      { version: 2, stage: 'PRODUCTION' },
      { version: 1, stage: 'ARCHIVED' },
    ]);
    const { auditEvents } = await api.ok<{ auditEvents: { edges: { node: { changes: string } }[] } }>(
      `{ auditEvents(filter: { actions: ["model_version.stage"] }) { edges { node { changes } } } }`,
    );
    expect(JSON.parse(auditEvents.edges[0].node.changes)).toMatchObject({
      version: 2,
      from: 'NONE',
      to: 'PRODUCTION',
      archived: [v1.id],
    });
  });

  it('keeps a deployment across a restart of its agent: given back on stop (PENDING), served again on its return', async () => {
    const deploymentQuery = `query($id: ID!) { deployment(id: $id) { state stateReason endpoint jobId } }`;
    type D = { state: string; stateReason: string | null; endpoint: string | null; jobId: string };
    const { deployment: before } = await api.ok<{ deployment: D }>(deploymentQuery, { id: deploymentId });
    expect(before.state).toBe('READY');

    expect(await agent.stop()).toBe(0); // SIGTERM: what `systemctl stop` and a host shutdown send
    const away = await waitFor(
      async () => {
        const { deployment } = await api.ok<{ deployment: D }>(deploymentQuery, { id: deploymentId });
        return deployment.state !== 'READY' ? deployment : undefined;
      },
      { timeoutMs: 10_000, what: 'the control plane to learn the deployment was given back' },
    );
    expect(away).toMatchObject({ state: 'PENDING', endpoint: null, jobId: before.jobId });
    expect(away.stateReason).toMatch(
      /^waiting: (every matching online agent is stopping|no matching agent is online)$/,
    );
    const [released] = await query<{ number: number; state: string; reason: string }>(
      db.adminUrl,
      `SELECT number, state, reason FROM job_attempts WHERE job_id = $1 ORDER BY number DESC LIMIT 1`,
      [before.jobId],
    );
    expect(released).toEqual({ number: 1, state: 'RELEASED', reason: 'agent stopping' });

    // This test's tap on `>` counts as interest in the dead agent's inbox, so nats-server would
    // still hand a dispatch or a cancel to its last pull requests (open up to 5 s) and the message
    // would wait out ack_wait (30 s). With no such subscriber it goes to the new process at once.
    await new Promise((r) => setTimeout(r, 5500));
    agent = runAgent(agentDir);
    const back = await waitFor(
      async () => {
        const { deployment } = await api.ok<{ deployment: D }>(deploymentQuery, { id: deploymentId });
        if (deployment.state === 'FAILED' || deployment.state === 'STOPPED')
          throw new Error(`deployment ${deployment.state}: ${deployment.stateReason}`);
        return deployment.state === 'READY' ? deployment : undefined;
      },
      { timeoutMs: 60_000, what: 'the deployment READY again' },
    );
    expect(back).toMatchObject({ endpoint, jobId: before.jobId, stateReason: null });
    const res = await fetch(`${endpoint}/v2/models/${modelName}/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'input', shape: [1, 2], datatype: 'FP32', data: [2, 2] }] }),
    });
    expect(res.status).toBe(200);
    const attempts = await query<{ number: number; state: string }>(
      db.adminUrl,
      `SELECT number, state FROM job_attempts WHERE job_id = $1 ORDER BY number`,
      [before.jobId],
    );
    expect(attempts).toEqual([
      { number: 1, state: 'RELEASED' },
      { number: 2, state: 'RUNNING' },
    ]);
  });

  it('batch-predicts on the agent and reports only counts and hashes', async () => {
    const { submitJob } = await api.ok<{ submitJob: { id: string } }>(
      `mutation($b: BatchPredictJobInput!) { submitJob(input: { kind: BATCH_PREDICT, batchPredict: $b }) { id } }`,
      { b: { modelVersionId: versionId, inputUri: `file://${join(dataRoot, 'score.csv')}` } },
    );
    const job = await waitForJob<Job>(api, submitJob.id, TERMINAL, JOB_FIELDS, 60_000);
    expect(job.state).toBe('SUCCEEDED');
    const result = JSON.parse(job.result!) as {
      batchPredict: { rows: number; output: { uri: string; sha256: string } };
    };
    expect(result.batchPredict.rows).toBe(50);
    expect(result.batchPredict.output.uri.startsWith(`file://${artifactRoot}/`)).toBe(true);
  });

  it('undeploys: the agent stops serving the model, and its last numbers stay on the deployment', async () => {
    // Since the agent's restart its version has answered one request; one refused request more.
    const refused = await fetch(`${endpoint}/v2/models/${modelName}/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'input', shape: [1, 2], datatype: 'FP32', data: ['x', 2] }] }),
    });
    expect(refused.status).toBe(400);
    await api.ok(`mutation($id: ID!) { undeployModel(id: $id) { state } }`, { id: deploymentId });
    await waitFor(async () => (await fetch(`${endpoint}/v2/models/${modelName}/ready`)).status === 404, {
      timeoutMs: 30_000,
      what: 'the model unloaded',
    });
    type Metrics = { requests: number; errors: number; clientErrors: number | null };
    const deployment = await waitFor(
      async () => {
        const { deployment } = await api.ok<{ deployment: { state: string; metrics: Metrics | null } }>(
          `query($id: ID!) { deployment(id: $id) { state metrics { requests errors clientErrors } } }`,
          { id: deploymentId },
        );
        return deployment.metrics?.requests === 2 ? deployment : undefined;
      },
      { timeoutMs: 15_000, what: "the undeployed version's last metrics" },
    );
    expect(deployment.state).toBe('STOPPED');
    expect(deployment.metrics).toMatchObject({ requests: 2, errors: 1, clientErrors: 1 });
  });

  it('fails bad training input with a precise reason, and the agent takes the next job', async () => {
    const submit = (t: Record<string, unknown>) =>
      api.ok<{ submitJob: { id: string } }>(
        `mutation($t: TrainJobInput!) { submitJob(input: { kind: TRAIN, train: $t }) { id } }`,
        {
          t: { modelName: 'churn', task: 'BINARY', model: 'LOGISTIC', epochs: 2, ...t },
        },
      );
    const missing = await submit({ datasetUri: `file://${join(dataRoot, 'train.csv')}`, target: 'churned' });
    const outside = await submit({ datasetUri: 'file:///etc/passwd', target: 'label' });
    for (const [{ submitJob }, pattern] of [
      [missing, /churned/],
      [outside, /outside|not under|allowed/i],
    ] as const) {
      const job = await waitForJob<Job>(api, submitJob.id, TERMINAL, JOB_FIELDS, 30_000);
      expect(job.state).toBe('FAILED');
      expect(job.stateReason).toMatch(pattern);
    }
    const { agents } = await api.ok<{ agents: { state: string }[] }>(`{ agents { state } }`);
    expect(agents[0].state).toBe('ONLINE');
  });

  it('refuses malformed ML requests at the API with clear errors', async () => {
    const r1 = await api.request(
      `mutation { submitJob(input: { kind: TRAIN, train: { modelName: "m", datasetUri: "file:///x.csv", target: "y", task: BINARY, model: LOGISTIC, epochs: 0 } }) { id } }`,
    );
    expect(r1.errors?.[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
    expect(r1.errors?.[0].message).toMatch(/^train\.epochs: /);
    const r2 = await api.request(`mutation { submitJob(input: { kind: TRAIN, command: ["true"] }) { id } }`);
    expect(r2.errors?.[0].message).toBe('command is only for COMMAND jobs');
    const r3 = await api.request(`mutation { submitJob(input: { kind: SERVE }) { id } }`);
    expect(r3.errors?.[0].message).toBe('SERVE jobs are created by deployModel');
    const r4 = await api.request(
      `mutation($v: ID!) { submitJob(input: { kind: BATCH_PREDICT, batchPredict: { modelVersionId: $v, inputUri: "file:///x.csv" } }) { id } }`,
      { v: randomUUID() },
    );
    expect(r4.errors?.[0].extensions?.code).toBe('NOT_FOUND');
    const r5 = await api.request(`mutation($v: ID!) { deployModel(input: { versionId: $v }) { id } }`, {
      v: randomUUID(),
    });
    expect(r5.errors?.[0].extensions?.code).toBe('NOT_FOUND');
  });

  it('keeps the data home: the canary is in no NATS message and no control-plane table', async () => {
    expect(seen.length).toBeGreaterThan(20); // the tap did see the traffic
    expect(seen.filter((m) => m.includes(CANARY))).toEqual([]);
    const tables = await query<{ tablename: string }>(
      db.adminUrl,
      `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`,
    );
    expect(tables.length).toBeGreaterThan(10);
    for (const { tablename } of tables) {
      const [row] = await query<{ hit: boolean }>(
        db.adminUrl,
        `SELECT coalesce(bool_or(t::text LIKE '%' || $1 || '%'), false) AS hit FROM "${tablename}" t`,
        [CANARY],
      );
      expect({ tablename, hit: row.hit }).toEqual({ tablename, hit: false });
    }
  });
});
