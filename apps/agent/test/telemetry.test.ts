/**
 * The real agent process's telemetry and GPU assignment, against the real nats-server with this test
 * playing the control plane, and a fake nvidia-smi on the agent's PATH (two GPUs). The agent samples
 * every second and sends through its egress guard (the ledger records each message); it assigns a job
 * the GPUs it asks for and attributes them to it; it refuses, before starting anything, a job asking
 * for more GPUs than are free.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager, RetentionPolicy } from '@nats-io/jetstream';
import { AgentTelemetry, decode, subjects, TELEMETRY_STREAM, type JobDispatch } from '@hearth/contracts';
import { writeFakeNvidiaSmi, type FakeGpus } from '@hearth/testing';
import { startAgent, type AgentProcess } from './agent-process.js';
import { FakeControlPlane, waitUntil } from './fake-control-plane.js';

jest.setTimeout(60_000);

let cp: FakeControlPlane;
let tmp: string;
let dataDir: string;
let agent: AgentProcess;
let gpus: FakeGpus;
const telemetry: AgentTelemetry[] = [];

beforeAll(async () => {
  cp = await FakeControlPlane.start();
  const jsm = await jetstreamManager(cp.nc);
  await jsm.streams.info(TELEMETRY_STREAM).catch(() =>
    jsm.streams.add({
      name: TELEMETRY_STREAM,
      subjects: [subjects.wildcard.telemetry],
      retention: RetentionPolicy.Workqueue,
    }),
  );
  cp.nc.subscribe(subjects.telemetry(cp.address), {
    callback: (_err, msg) => {
      const decoded = decode(AgentTelemetry, msg.data);
      if (decoded.ok) telemetry.push(decoded.value);
      else cp.invalidUp.push(decoded.error);
    },
  });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-agent-telemetry-'));
  gpus = writeFakeNvidiaSmi(tmp, { gpus: 2 });
  dataDir = path.join(tmp, 'data');
  cp.writeDataDir(dataDir);
  agent = await startAgent(dataDir, tmp, ['--telemetry-interval', '1'], {
    PATH: `${gpus.binDir}:${process.env.PATH}`,
  });
});

afterAll(async () => {
  agent?.stop();
  const jsm = await jetstreamManager(cp.nc);
  await jsm.streams
    .purge(TELEMETRY_STREAM, { filter: subjects.telemetry(cp.address) })
    .catch(() => undefined);
  await cp?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const node = (script: string) => ['node', '-e', script];
const job = (command: string[], extra: Partial<JobDispatch>) =>
  cp.send({ kind: 'command', command, ...extra } as Parameters<FakeControlPlane['send']>[0]);

describe('agent telemetry', () => {
  it('samples every second and sends each sample through the egress guard', async () => {
    await waitUntil(() => telemetry.length >= 3, 15_000, 'three telemetry messages');
    const [message] = telemetry;
    expect(message.agentId).toBe(cp.address.agentId);
    expect(message.intervalSeconds).toBe(1);
    expect(message.gpus.map((g) => g.uuid)).toEqual(gpus.uuids);
    expect(message.samples[0].gpus).toHaveLength(2);
    expect(cp.invalidUp).toEqual([]);
    const ledger = fs.readFileSync(path.join(dataDir, 'egress.ledger.jsonl'), 'utf8');
    expect(ledger).toContain(`"subject":"${subjects.telemetry(cp.address)}","type":"agent.telemetry"`);
  });

  it('refuses a job that asks for more GPUs than are free, before starting anything', async () => {
    const marker = path.join(tmp, 'greedy-ran');
    const greedy = await job(['touch', marker], { gpus: 4 });
    expect(await cp.waitFinished(greedy.attemptId)).toMatchObject({
      outcome: 'FAILED',
      exitCode: null,
      reason: 'refused: not enough free GPUs: asked for 4 GPUs, 2 NVIDIA GPUs or 0 AMD GPUs free',
    });
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('gives a job the GPUs it asks for and attributes them to it while it runs', async () => {
    const seen = telemetry.length;
    const run = await job(
      node('console.log("CUDA=" + process.env.CUDA_VISIBLE_DEVICES); setTimeout(() => {}, 4000)'),
      { gpus: 2, gpuVendor: 'nvidia' },
    );
    await waitUntil(
      () =>
        telemetry
          .slice(seen)
          .some(
            (m) =>
              m.jobs.includes(run.jobId) &&
              m.samples.some((s) => s.gpus.every(([, , , , , , , j]) => j !== null)),
          ),
      15_000,
      'a sample with both GPUs attributed to the job',
    );
    const withJob = telemetry.slice(seen).find((m) => m.jobs.includes(run.jobId))!;
    const sample = withJob.samples.find((s) => s.gpus.every(([, , , , , , , j]) => j !== null))!;
    for (const [, util, , , , , , j] of sample.gpus) {
      expect(withJob.jobs[j!]).toBe(run.jobId);
      expect(util).toBe(87);
    }
    expect(sample.jobs.map(([j]) => withJob.jobs[j])).toContain(run.jobId);
    expect(await cp.waitFinished(run.attemptId)).toMatchObject({ outcome: 'SUCCEEDED' });
    expect(cp.logText(run.attemptId)).toContain(`CUDA=${gpus.uuids.join(',')}`);
  });
});
