import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentTelemetry, buildAgentTelemetry, encode } from '@hearth/contracts';
import { TelemetryCollector, type TelemetryCollectorOptions } from './collector.js';
import { GpuAllocator } from './gpu-allocator.js';
import { NVIDIA_APP_ARGS, NVIDIA_GPU_ARGS } from './nvidia-smi.js';
import type { RunningJob } from './process-tree.js';
import { parseRocmSmiJson } from './rocm-smi.js';
import { createToolRunner } from './tool-runner.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-collector-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

const JOB_A = '0190f3a4-5b6c-7d8e-9f00-1122334455aa';
const JOB_B = '0190f3a4-5b6c-7d8e-9f00-1122334455bb';
let n = 0;

/** Fake vendor tools on PATH, printing fixtures only for the exact queries the collector makes. */
function tools(options: { nvidia?: string; apps?: string; rocm?: string; nvidiaBody?: string } = {}): string {
  const dir = path.join(root, `bin-${n++}`);
  fs.mkdirSync(dir);
  const script = (name: string, body: string) =>
    fs.writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  if (options.nvidiaBody) script('nvidia-smi', options.nvidiaBody);
  else if (options.nvidia) {
    script(
      'nvidia-smi',
      [
        `[ "$2" = "${NVIDIA_GPU_ARGS[1]}" ] || exit 2`,
        `[ "$1" = "${NVIDIA_GPU_ARGS[0]}" ] && exec cat '${fixture(options.nvidia)}'`,
        `[ "$1" = "${NVIDIA_APP_ARGS[0]}" ] && ${options.apps ? `exec cat '${fixture(options.apps)}'` : 'exit 0'}`,
        'exit 2',
      ].join('\n'),
    );
  }
  if (options.rocm) script('rocm-smi', `exec cat '${fixture(options.rocm)}'`);
  return dir;
}

interface ProcState {
  cpu: [busy: number, idle: number];
  disk: [readSectors: number, writeSectors: number];
  net: [rx: number, tx: number];
  /** pid, ppid, ticks; each its own process group unless it is in a job's (pgrp given). */
  processes: [pid: number, ppid: number, ticks: number, pgrp?: number][];
}

/** A /proc tree as the collector reads it. */
function writeProc(dir: string, state: ProcState): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, 'net'), { recursive: true });
  const [busy, idle] = state.cpu;
  fs.writeFileSync(path.join(dir, 'stat'), `cpu  ${busy} 0 0 ${idle} 0 0 0 0 0 0\n`);
  fs.copyFileSync(fixture('proc/meminfo'), path.join(dir, 'meminfo'));
  const [read, write] = state.disk;
  fs.writeFileSync(path.join(dir, 'diskstats'), ` 259 0 nvme0n1 1 0 ${read} 0 1 0 ${write} 0 0 0 0\n`);
  const [rx, tx] = state.net;
  fs.writeFileSync(
    path.join(dir, 'net/dev'),
    `lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\neno1: ${rx} 1 0 0 0 0 0 0 ${tx} 1 0 0 0 0 0 0\n`,
  );
  for (const [pid, ppid, ticks, pgrp = pid] of state.processes) {
    fs.mkdirSync(path.join(dir, String(pid)));
    const stat = `${pid} (proc ${pid}) S ${ppid} ${pgrp} ${pgrp} 0 -1 4194560 0 0 0 0 ${ticks} 0 0 0 20 0 1 0 100 0 0\n`;
    fs.writeFileSync(path.join(dir, String(pid), 'stat'), stat);
  }
}

function collector(
  bin: string,
  procRoot: string,
  jobs: RunningJob[],
  extra: Partial<TelemetryCollectorOptions> = {},
): TelemetryCollector {
  let ms = 0;
  return new TelemetryCollector({
    runningJobs: () => jobs,
    runTool: createToolRunner({ env: { PATH: `${bin}:/usr/bin:/bin` }, timeoutMs: 2000 }),
    procRoot,
    clock: () => (ms += 10_000), // ten seconds between samples
    now: () => new Date('2026-11-21T10:00:00.000Z'),
    ...extra,
  });
}

// Job A (root 41870) runs the four training processes on GPUs 0-3; job B (root 60000) uses no GPU;
// pid 52310 on GPU 6 belongs to no job (someone ran it by hand).
const jobs = [
  { jobId: JOB_A, pid: 41870 },
  { jobId: JOB_B, pid: 60000 },
];
const processes = (a: number, b: number): ProcState['processes'] => [
  [1, 0, 0],
  [41870, 2001, 0, 41870],
  [41876, 41870, a, 41870],
  [41877, 41870, a, 41870],
  [41878, 41870, 0, 41870],
  [41879, 41876, 0, 41870],
  [60000, 2001, b],
  [52310, 1, 5000],
];

describe('TelemetryCollector', () => {
  it('samples an 8×H100 host: GPUs with their jobs, host rates and each job’s CPU share', async () => {
    const proc = path.join(root, 'proc-h100');
    const bin = tools({ nvidia: 'nvidia-8xh100.csv', apps: 'nvidia-apps-8xh100.csv' });
    const c = collector(bin, proc, jobs);
    writeProc(proc, { cpu: [1000, 9000], disk: [0, 0], net: [0, 0], processes: processes(100, 50) });
    const first = await c.sample();
    expect(first.cpuPct).toBeNull();
    expect(first.disk).toBeNull();
    expect(first.jobs).toEqual([
      { jobId: JOB_A, cpuPct: null },
      { jobId: JOB_B, cpuPct: null },
    ]);

    // Ten seconds later: the host counted 16000 ticks, 4000 busy; job A used 8000, job B 400.
    writeProc(proc, {
      cpu: [5000, 21000],
      disk: [2_000_000, 200_000],
      net: [1_250_000_000, 50_000_000],
      processes: processes(4100, 450),
    });
    const second = await c.sample();
    expect(second.cpuPct).toBe(25);
    expect(second.disk).toEqual({ readBps: 102_400_000, writeBps: 10_240_000 });
    expect(second.net).toEqual({ rxBps: 125_000_000, txBps: 5_000_000 });
    expect(second.memory?.totalMiB).toBe(Math.round(2113248124 / 1024));
    expect(second.jobs).toEqual([
      { jobId: JOB_A, cpuPct: 50 },
      { jobId: JOB_B, cpuPct: 2.5 },
    ]);
    expect(second.gpus.map((g) => [g.index, g.jobId, g.foreignProcesses])).toEqual([
      [0, JOB_A, 0],
      [1, JOB_A, 0],
      [2, JOB_A, 0],
      [3, JOB_A, 0],
      [4, null, 0],
      [5, null, 0],
      [6, null, 1],
      [7, null, 0],
    ]);
    expect(second.gpus[0]).toMatchObject({ utilizationPct: 97, powerW: 612.9, memoryUsedMiB: 78215 });
    expect(second.issues).toEqual({ skippedLines: 0, rejectedValues: 0, failedTools: [] });
    expect(c.tools).toEqual({
      'nvidia-smi': { result: 'ok', reason: null },
      'rocm-smi': { result: 'missing', reason: null },
    });
    // What it produces, the contract accepts.
    const message = buildAgentTelemetry('0190f3a4-5b6c-7d8e-9f00-112233445566', [first, second], 0);
    expect(() => encode(AgentTelemetry, message)).not.toThrow();
  });

  it('attributes AMD GPUs to the job assigned them once a process of that job uses a GPU', async () => {
    const proc = path.join(root, 'proc-mi300x');
    writeProc(proc, {
      cpu: [1000, 9000],
      disk: [0, 0],
      net: [0, 0],
      processes: [
        [41870, 2001, 0],
        [412301, 41870, 0, 41870],
        [60000, 2001, 0],
      ],
    });
    const rocm = fs.readFileSync(fixture('rocm-mi300x.json'), 'utf8');
    const allocator = new GpuAllocator(parseRocmSmiJson(rocm).gpus);
    allocator.assign(JOB_A, 4, 'amd');
    allocator.assign(JOB_B, 2, 'amd'); // assigned, but job B runs nothing on a GPU yet
    const c = collector(tools({ rocm: 'rocm-mi300x.json' }), proc, jobs, {
      assignedJob: (gpu) => allocator.ownerOf(gpu),
    });
    const sample = await c.sample();
    expect(sample.gpus.map((g) => [g.vendor, g.index, g.jobId])).toEqual([
      ['amd', 0, JOB_A],
      ['amd', 1, JOB_A],
      ['amd', 2, JOB_A],
      ['amd', 3, JOB_A],
      ['amd', 4, null],
      ['amd', 5, null],
      ['amd', 6, null],
      ['amd', 7, null],
    ]);
    expect(sample.gpus.every((g) => g.foreignProcesses === null)).toBe(true);
    expect(c.tools['nvidia-smi']).toEqual({ result: 'missing', reason: null });
  });

  it('still samples the host when nvidia-smi hangs, and says the tool failed', async () => {
    const proc = path.join(root, 'proc-hang');
    writeProc(proc, { cpu: [1000, 9000], disk: [0, 0], net: [0, 0], processes: [] });
    const bin = tools({ nvidiaBody: 'exec sleep 1000' });
    const c = collector(bin, proc, [], {
      runTool: createToolRunner({ env: { PATH: `${bin}:/usr/bin:/bin` }, timeoutMs: 300 }),
    });
    const sample = await c.sample();
    expect(sample.gpus).toEqual([]);
    expect(sample.memory).not.toBeNull();
    expect(sample.issues.failedTools).toEqual(['nvidia-smi']);
    expect(c.counters).toMatchObject({ samples: 1, toolTimeouts: 1, toolFailures: 0 });
    expect(c.tools['nvidia-smi']).toEqual({
      result: 'timeout',
      reason: 'nvidia-smi timed out after 300 ms and was killed',
    });
  });

  it('counts skipped lines and rejected values from malformed tool output', async () => {
    const proc = path.join(root, 'proc-malformed');
    writeProc(proc, { cpu: [1000, 9000], disk: [0, 0], net: [0, 0], processes: [] });
    const bin = tools({
      nvidia: 'nvidia-malformed.csv',
      apps: 'nvidia-apps-malformed.csv',
      rocm: 'rocm-malformed.txt',
    });
    const c = collector(bin, proc, []);
    const sample = await c.sample();
    expect(sample.gpus.map((g) => `${g.vendor}${g.index}`)).toEqual([
      'nvidia0',
      'nvidia3',
      'nvidia5',
      'amd0',
      'amd2',
    ]);
    expect(sample.issues).toEqual({ skippedLines: 5 + 3 + 4, rejectedValues: 3 + 1 + 2, failedTools: [] });
    expect(c.counters).toMatchObject({ skippedLines: 12, rejectedValues: 6 });
  });

  it('takes "No devices were found" as no GPUs, and a broken driver as a failure', async () => {
    const proc = path.join(root, 'proc-nodev');
    writeProc(proc, { cpu: [1000, 9000], disk: [0, 0], net: [0, 0], processes: [] });
    const none = collector(tools({ nvidiaBody: 'echo "No devices were found"\nexit 6' }), proc, []);
    expect((await none.sample()).issues.failedTools).toEqual([]);

    const broken = tools({
      nvidiaBody:
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9',
    });
    const c = collector(broken, proc, []);
    expect((await c.sample()).issues.failedTools).toEqual(['nvidia-smi']);
    expect(c.counters.toolFailures).toBe(1);
    expect(c.tools['nvidia-smi'].reason).toContain("couldn't communicate with the NVIDIA driver");
  });
});
