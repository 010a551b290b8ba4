/**
 * Telemetry through a real job: the control plane, a real agent whose PATH has a fake nvidia-smi
 * (the GPU is the one edge we fake; it speaks the real tool's output format), real Postgres and
 * nats-server. A job that asks for GPUs gets them (CUDA_VISIBLE_DEVICES names exactly those), its
 * process shows up on them, and the telemetry attributes them to the job; the dispatcher never sends a
 * job to an agent without the GPUs free.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  startAgent,
  startControlPlane,
  submitCommand,
  waitFor,
  waitForAgentGpus,
  waitForJob,
  writeFakeNvidiaSmi,
  type ControlPlane,
  type FakeGpus,
  type TestAgent,
  type TestDatabase,
  SHARED_NATS_URL,
} from '@hearth/testing';

const NATS_URL = SHARED_NATS_URL;
const dir = mkdtempSync(join(tmpdir(), 'hearth-telemetry-e2e-'));
let db: TestDatabase;
let cp: ControlPlane;
let agent: TestAgent;
let api: GraphQLClient;
let other: GraphQLClient;
let gpus: FakeGpus;

const node = (script: string) => ['node', '-e', script];

const submit = (command: string[], gpus: number) => submitCommand(api, command, gpus);

beforeAll(async () => {
  gpus = writeFakeNvidiaSmi(dir, { gpus: 4 });
  db = await createTestDatabase();
  cp = await startControlPlane({
    DATABASE_URL: db.appUrl,
    NATS_URL,
    TELEMETRY_FLUSH_MS: '50',
    TELEMETRY_ROLLUP_INTERVAL_SECONDS: '1',
    TELEMETRY_ROLLUP_SETTLE_SECONDS: '2',
    TELEMETRY_IDLE_INTERVAL_SECONDS: '2',
    CANCEL_GRACE_SECONDS: '1',
  });
  const org = await createOrganization(db.appUrl, 'GPU Co');
  api = new GraphQLClient(cp.graphqlUrl, org.adminToken);
  other = new GraphQLClient(cp.graphqlUrl, (await createOrganization(db.appUrl, 'Other Co')).adminToken);
  const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
    `mutation { createJoinToken { token } }`,
  );
  agent = await startAgent(cp.url, createJoinToken.token, {
    args: ['--telemetry-interval', '1', '--max-jobs', '4'],
    env: { PATH: `${gpus.binDir}:${process.env.PATH}` },
  });
  await waitForAgentGpus(api, 4);
});

afterAll(async () => {
  await agent?.proc.stop();
  await cp?.stop();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('a job that asks for GPUs', () => {
  it('gets exactly those GPUs, runs on them, and its telemetry is attributed to it', async () => {
    const started = new Date(Date.now() - 60_000);
    const id = await submit(
      node('console.log("CUDA=" + process.env.CUDA_VISIBLE_DEVICES); setTimeout(() => {}, 6000)'),
      2,
    );
    // While it runs the fleet shows its two GPUs allocated and busy.
    const fleet = await waitFor(
      async () => {
        const { fleetUtilization } = await api.ok<{
          fleetUtilization: {
            gpusTotal: number;
            gpusReporting: number;
            gpusAllocated: number;
            gpusBusy: number;
          };
        }>(`{ fleetUtilization { gpusTotal gpusReporting gpusAllocated gpusBusy } }`);
        return fleetUtilization.gpusAllocated === 2 && fleetUtilization;
      },
      { what: 'two GPUs allocated', timeoutMs: 15_000 },
    );
    expect(fleet).toEqual({ gpusTotal: 4, gpusReporting: 4, gpusAllocated: 2, gpusBusy: 2 });

    const done = await waitForJob<{ state: string; logTail: string; gpus: number }>(
      api,
      id,
      ['SUCCEEDED', 'FAILED'],
      'state logTail gpus',
    );
    expect(done.state).toBe('SUCCEEDED');
    expect(done.gpus).toBe(2);
    expect(done.logTail).toContain(`CUDA=${gpus.uuids[0]},${gpus.uuids[1]}`);

    const series = await waitFor(
      async () => {
        const { jobTelemetry } = await api.ok<{
          jobTelemetry: {
            points: { gpus: number; utilizationPct: number }[];
            gpus: {
              gpu: { index: number; uuid: string; name: string };
              points: { utilizationPct: number }[];
            }[];
          };
        }>(
          `query($id: ID!, $r: TelemetryRangeInput!) { jobTelemetry(jobId: $id, range: $r) {
             points { gpus utilizationPct } gpus { gpu { index uuid name } points { utilizationPct } } } }`,
          {
            id,
            r: {
              from: started.toISOString(),
              to: new Date(Date.now() + 60_000).toISOString(),
              resolution: 'RAW',
            },
          },
        );
        return jobTelemetry.points.length >= 3 && jobTelemetry;
      },
      { what: "the job's telemetry" },
    );
    expect(series.gpus.map((g) => g.gpu)).toEqual([
      { index: 0, uuid: gpus.uuids[0], name: gpus.name },
      { index: 1, uuid: gpus.uuids[1], name: gpus.name },
    ]);
    // Its process was on both GPUs: every sample attributed to it shows them busy.
    expect(series.points.some((p) => p.gpus === 2 && p.utilizationPct === 87)).toBe(true);

    // Another organization cannot see it.
    expect(
      await other.errorCode(
        `query($id: ID!, $r: TelemetryRangeInput!) { jobTelemetry(jobId: $id, range: $r) { id } }`,
        { id, r: { from: started.toISOString(), to: new Date().toISOString() } },
      ),
    ).toBe('NOT_FOUND');
  });

  it('is only dispatched where enough GPUs are free, and waits otherwise', async () => {
    const tooBig = await submit(['true'], 8);
    const [first, second] = [
      await submit(
        node('setTimeout(() => console.log("first " + process.env.CUDA_VISIBLE_DEVICES), 3000)'),
        3,
      ),
      await submit(node('console.log("second " + process.env.CUDA_VISIBLE_DEVICES)'), 3),
    ];
    const waiting = await api.ok<{ job: { state: string; stateReason: string } }>(
      `query($id: ID!) { job(id: $id) { state stateReason } }`,
      { id: tooBig },
    );
    expect(waiting.job).toEqual({
      state: 'QUEUED',
      stateReason: 'waiting: no matching online agent has 8 GPUs',
    });
    const meanwhile = await api.ok<{ job: { state: string } }>(`query($id: ID!) { job(id: $id) { state } }`, {
      id: second,
    });
    expect(meanwhile.job.state).toBe('QUEUED'); // 3 + 3 > 4: it waits for the first to give them back
    const a = await waitForJob<{ state: string; logTail: string }>(
      api,
      first,
      ['SUCCEEDED', 'FAILED'],
      'logTail',
    );
    const b = await waitForJob<{ state: string; logTail: string }>(
      api,
      second,
      ['SUCCEEDED', 'FAILED'],
      'logTail',
    );
    expect([a.state, b.state]).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    expect(a.logTail).toContain(`first ${gpus.uuids.slice(0, 3).join(',')}`);
    expect(b.logTail).toContain(`second ${gpus.uuids.slice(0, 3).join(',')}`);
  });

  it('shows a job that asked for no GPU none of them', async () => {
    const id = await submit(node('console.log("CUDA=" + process.env.CUDA_VISIBLE_DEVICES)'), 0);
    const done = await waitForJob<{ state: string; logTail: string }>(
      api,
      id,
      ['SUCCEEDED', 'FAILED'],
      'logTail',
    );
    expect(done.logTail).toContain('CUDA=-1');
  });
});
