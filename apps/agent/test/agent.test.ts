/**
 * The real agent process against the real nats-server, with this test playing the control plane.
 * Needs `npx tsc -b apps/agent` (npm run build) first; it builds once itself when dist is missing.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { subjects } from '@hearth/contracts';
import { metricValue, scrapePrometheus, startProcess, type PrometheusSample } from '@hearth/testing';
import { agentDir, metricsUrl, runAgentToExit, startAgent, type AgentProcess } from './agent-process.js';
import { FakeControlPlane, waitUntil } from './fake-control-plane.js';

// testTimeout in a jest project entry is not applied (it is a global option): set it here.
jest.setTimeout(60_000);

const agentVersion = (
  JSON.parse(fs.readFileSync(path.join(agentDir, 'package.json'), 'utf8')) as { version: string }
).version;

let cp: FakeControlPlane;
let tmp: string;
let dataDir: string;
let agent: AgentProcess;

beforeAll(async () => {
  cp = await FakeControlPlane.start();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-agent-it-'));
  dataDir = path.join(tmp, 'data');
  cp.writeDataDir(dataDir);
  agent = await startAgent(dataDir, tmp, ['--max-jobs', '2', '--metrics-port', '0']);
});

afterAll(async () => {
  agent?.stop();
  await cp?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const node = (script: string) => ['node', '-e', script];

describe('hearth-agent run', () => {
  it('sends heartbeats with its system info', async () => {
    await waitUntil(() => cp.heartbeats.length > 0, 10_000, 'a heartbeat');
    const [hb] = cp.heartbeats;
    expect(hb.agentId).toBe(cp.address.agentId);
    expect(hb.system).toMatchObject({
      hostname: os.hostname(),
      arch: os.arch(),
      cpus: os.cpus().length,
      memoryBytes: os.totalmem(),
      agentVersion,
    });
    expect(hb.system.os).toBe(`${os.type()} ${os.release()}`);
    expect(hb.freeSlots).toBe(2);
    expect(hb.running).toEqual([]);
  });

  it('runs a job and reports SUCCEEDED with its log tail, then acks the dispatch', async () => {
    const job = await cp.dispatch(
      node('console.log("hello from the job"); console.error(process.env.HEARTH_ATTEMPT_ID)'),
    );
    const finished = await cp.waitFinished(job.attemptId);
    expect(finished).toMatchObject({ outcome: 'SUCCEEDED', exitCode: 0, signal: null, fencingToken: 1 });
    expect(cp.logText(job.attemptId)).toEqual(expect.arrayContaining(['hello from the job', job.attemptId]));
    const fullLog = path.join(dataDir, 'logs', job.jobId, `${job.attemptId}.log`);
    expect(fs.readFileSync(fullLog, 'utf8')).toContain('hello from the job');
    await waitUntil(async () => (await cp.jobConsumerInfo()).num_ack_pending === 0, 5000, 'the dispatch ack');
    const ledger = fs.readFileSync(path.join(dataDir, 'egress.ledger.jsonl'), 'utf8');
    expect(ledger).toContain('"type":"job.finished"');
    expect(ledger).not.toContain('hello from the job');
  });

  it('reports a non-zero exit as FAILED with the exit code', async () => {
    const job = await cp.dispatch(node('process.exit(3)'));
    expect(await cp.waitFinished(job.attemptId)).toMatchObject({ outcome: 'FAILED', exitCode: 3 });
  });

  it('never runs an attempt whose claim is refused, and terminates its message', async () => {
    const marker = path.join(tmp, 'refused-job-ran');
    // Refused before it is dispatched: the agent may claim before dispatch() even returns.
    const attemptId = randomUUID();
    cp.refuse.add(attemptId);
    const job = await cp.dispatch(['touch', marker], { attemptId });
    await waitUntil(() => cp.claims.some((c) => c.attemptId === job.attemptId), 10_000, 'the claim');
    await waitUntil(async () => (await cp.jobConsumerInfo()).num_ack_pending === 0, 5000, 'the term');
    await new Promise((r) => setTimeout(r, 1000));
    expect(fs.existsSync(marker)).toBe(false);
    expect(cp.finished(job.attemptId)).toBeUndefined();
    const info = await cp.jobConsumerInfo();
    expect(info.num_pending + info.num_ack_pending).toBe(0);
    expect(cp.claims.filter((c) => c.attemptId === job.attemptId)).toHaveLength(1);
  });

  it('survives malformed dispatch messages and runs the next valid job', async () => {
    await cp.publishRaw(subjects.jobs(cp.address), new TextEncoder().encode('not json at all'));
    await cp.publishRaw(subjects.jobs(cp.address), new TextEncoder().encode('{"type":"job.dispatch","v":1}'));
    const job = await cp.dispatch(node('console.log("still alive")'));
    expect(await cp.waitFinished(job.attemptId)).toMatchObject({ outcome: 'SUCCEEDED' });
    expect(agent.proc.exitCode).toBeNull();
    expect(agent.log()).toContain('invalid job dispatch message terminated');
    await waitUntil(async () => (await cp.jobConsumerInfo()).num_ack_pending === 0, 5000, 'the terms');
  });

  it('holds no more jobs than --max-jobs', async () => {
    const script = node('setTimeout(() => {}, 1500)');
    const jobs = await Promise.all([cp.dispatch(script), cp.dispatch(script), cp.dispatch(script)]);
    const ids = new Set(jobs.map((j) => j.attemptId));
    const claimed = () => cp.claims.filter((c) => ids.has(c.attemptId)).length;
    await waitUntil(() => claimed() === 2, 10_000, 'two claims');
    const seen = cp.heartbeats.length;
    await waitUntil(() => cp.heartbeats.length > seen, 5000, 'a heartbeat while two jobs run');
    expect(claimed()).toBe(2);
    const hb = cp.heartbeats.at(-1)!;
    expect(hb.freeSlots).toBe(0);
    expect(hb.running.map((r) => r.attemptId).sort()).toEqual(
      jobs
        .filter((j) => cp.claims.some((c) => c.attemptId === j.attemptId))
        .map((j) => j.attemptId)
        .sort(),
    );
    for (const job of jobs)
      expect(await cp.waitFinished(job.attemptId)).toMatchObject({ outcome: 'SUCCEEDED' });
  });

  it('cancels a running attempt on a JobCancel', async () => {
    const job = await cp.dispatch(node('console.log("ready"); setInterval(() => {}, 1000)'));
    await waitUntil(() => cp.logText(job.attemptId).includes('ready'), 10_000, 'the job to start');
    await cp.cancel(job);
    expect(await cp.waitFinished(job.attemptId)).toMatchObject({ outcome: 'CANCELLED', signal: 'SIGTERM' });
  });

  it('retries the claim while the control plane does not answer, then runs the job', async () => {
    cp.pauseClaims();
    const job = await cp.dispatch(node('console.log("claimed late")'));
    const retried = () =>
      agent
        .log()
        .split('\n')
        .some((line) => line.includes(job.attemptId) && line.includes('claim not answered; retrying'));
    await waitUntil(retried, 10_000, 'a claim retry');
    expect(cp.claims.some((c) => c.attemptId === job.attemptId)).toBe(false);
    cp.resumeClaims();
    expect(await cp.waitFinished(job.attemptId)).toMatchObject({ outcome: 'SUCCEEDED' });
  });

  it('shows on its metrics endpoint the jobs it holds and how they ended', async () => {
    const url = metricsUrl(agent.log());
    const scrape = () => scrapePrometheus(url);
    const failed = (samples: PrometheusSample[]) =>
      metricValue(samples, 'hearth_agent_jobs_finished_total', { kind: 'command', outcome: 'FAILED' }) ?? 0;
    const invalid = (samples: PrometheusSample[]) =>
      metricValue(samples, 'hearth_agent_invalid_messages_total', { channel: 'dispatch' }) ?? 0;
    const before = await scrape();
    expect(metricValue(before, 'hearth_agent_nats_connected')).toBe(1);
    const readyz = await fetch(url.replace(/\/metrics$/, '/readyz'));
    expect([readyz.status, await readyz.json()]).toEqual([200, { status: 'ready', nats: 'connected' }]);

    const job = await cp.dispatch(node('console.log("ready"); setTimeout(() => process.exit(4), 1000)'));
    await waitUntil(() => cp.logText(job.attemptId).includes('ready'), 10_000, 'the job to start');
    const during = await scrape();
    expect(metricValue(during, 'hearth_agent_attempts', { kind: 'command', state: 'running' })).toBe(1);
    expect(await cp.waitFinished(job.attemptId)).toMatchObject({ outcome: 'FAILED', exitCode: 4 });
    await cp.publishRaw(subjects.jobs(cp.address), new TextEncoder().encode('{"type":"job.dispatch"}'));
    await waitUntil(
      async () => invalid(await scrape()) === invalid(before) + 1,
      10_000,
      'the invalid message',
    );

    const after = await scrape();
    expect(failed(after)).toBe(failed(before) + 1);
    expect(
      metricValue(after, 'hearth_agent_attempts', { kind: 'command', state: 'running' }),
    ).toBeUndefined();
    const finishedSent = (samples: PrometheusSample[]) =>
      metricValue(samples, 'hearth_agent_egress_messages_total', { type: 'job.finished' }) ?? 0;
    expect(finishedSent(after)).toBeGreaterThan(finishedSent(before));

    // Another agent told to use the same metrics port stops at start, saying why.
    const port = new URL(url).port;
    const second = await runAgentToExit(['run', '--data-dir', dataDir, '--metrics-port', port]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(
      `hearth-agent: the metrics endpoint cannot listen on 127.0.0.1:${port}: EADDRINUSE (the port is in use`,
    );
  });

  it('on SIGTERM lets the running job finish, reports it and exits 0', async () => {
    const job = await cp.dispatch(node('setTimeout(() => console.log("finished in time"), 1500)'));
    await waitUntil(() => cp.claims.some((c) => c.attemptId === job.attemptId), 10_000, 'the claim');
    agent.proc.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    expect(cp.finished(job.attemptId)).toMatchObject({ outcome: 'SUCCEEDED' });
    expect(cp.logText(job.attemptId)).toContain('finished in time');
    expect(cp.invalidUp).toEqual([]);
  });
});

describe('hearth-agent run, stopping', () => {
  const stubborn = node(
    "process.on('SIGTERM', () => {}); console.log('pid=' + process.pid); setInterval(() => {}, 1000)",
  );

  const started: AgentProcess[] = [];
  afterAll(() => started.forEach((a) => a.stop()));

  async function startStubbornJob(extraArgs: string[]) {
    const restarted = await startAgent(dataDir, tmp, extraArgs);
    started.push(restarted);
    const job = await cp.dispatch(stubborn);
    await waitUntil(
      () => cp.logText(job.attemptId).some((l) => l.startsWith('pid=')),
      10_000,
      'the job to start',
    );
    const pid = Number(
      cp
        .logText(job.attemptId)
        .find((l) => l.startsWith('pid='))!
        .slice(4),
    );
    return { restarted, job, pid };
  }

  const alive = (pid: number) => {
    try {
      return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };

  it('kills what is still running at the drain timeout, gives it back (job.released) and exits 0', async () => {
    const { restarted, job, pid } = await startStubbornJob(['--drain-seconds', '1']);
    const heartbeatsBefore = cp.heartbeats.length;
    restarted.proc.kill('SIGTERM');
    expect(await restarted.exited).toBe(0);
    // While it drained, its heartbeats said it was stopping (so no control plane sends it work).
    expect(cp.heartbeats.slice(heartbeatsBefore)).toContainEqual(
      expect.objectContaining({ stopping: true, freeSlots: 0 }),
    );
    expect(alive(pid)).toBe(false);
    expect(cp.finished(job.attemptId)).toBeUndefined();
    expect(cp.released(job.attemptId)).toMatchObject({ reason: 'agent stopped: drain timeout of 1s' });
  });

  it('on a second signal kills running jobs at once and exits 1', async () => {
    const { restarted, job, pid } = await startStubbornJob(['--drain-seconds', '60']);
    restarted.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    expect(restarted.proc.exitCode).toBeNull(); // draining
    const started = Date.now();
    restarted.proc.kill('SIGINT');
    expect(await restarted.exited).toBe(1);
    expect(Date.now() - started).toBeLessThan(4000);
    expect(alive(pid)).toBe(false);
    expect(cp.released(job.attemptId)).toMatchObject({ reason: 'agent stopped (forced)' });
  });
});

describe('hearth-agent run, monitoring', () => {
  it('answers its probes before it reaches the control plane: /healthz 200, /readyz 503, nats_connected 0', async () => {
    const unreachable = path.join(tmp, 'unreachable');
    cp.writeDataDir(unreachable);
    const proc = startProcess(
      process.execPath,
      [
        path.join(agentDir, 'bin', 'hearth-agent.js'),
        'run',
        '--data-dir',
        unreachable,
        '--nats-url',
        'nats://127.0.0.1:1',
        '--metrics-port',
        '0',
      ],
      {},
      'agent-unreachable',
    );
    try {
      const url = metricsUrl(await proc.waitForLine((l) => l.includes('metrics endpoint listening')));
      await proc.waitForLine((l) => l.includes('cannot connect to NATS; retrying'));
      const base = url.replace(/\/metrics$/, '');
      const healthz = await fetch(`${base}/healthz`);
      expect([healthz.status, await healthz.json()]).toEqual([200, { status: 'ok' }]);
      const readyz = await fetch(`${base}/readyz`);
      expect([readyz.status, await readyz.json()]).toEqual([
        503,
        { status: 'not ready', nats: 'disconnected' },
      ]);
      const samples = await scrapePrometheus(url);
      expect(metricValue(samples, 'hearth_agent_nats_connected')).toBe(0);
      expect(await proc.stop()).toBe(0);
      // The endpoint went with the agent.
      await expect(fetch(url)).rejects.toThrow();
    } finally {
      proc.kill9();
    }
  });
});
