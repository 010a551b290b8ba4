import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  cpuShare,
  jobOwners,
  jobTicks,
  parseProcessStat,
  readProcessTable,
  type ProcessStat,
} from './process-tree.js';

const procFixture = new URL('./fixtures/proc/', import.meta.url).pathname;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-ptree-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const JOB_A = '0190f3a4-5b6c-7d8e-9f00-1122334455aa';
const JOB_B = '0190f3a4-5b6c-7d8e-9f00-1122334455bb';

function table(
  ...rows: [pid: number, ppid: number, pgrp: number, ticks?: number][]
): Map<number, ProcessStat> {
  return new Map(rows.map(([pid, ppid, pgrp, ticks = 0]) => [pid, { pid, ppid, pgrp, ticks }]));
}

describe('process tree', () => {
  it('parses /proc/<pid>/stat, whatever the command name holds', () => {
    const text = fs.readFileSync(path.join(procFixture, '41877/stat'), 'utf8');
    expect(parseProcessStat(text)).toEqual({ pid: 41877, ppid: 41876, pgrp: 41870, ticks: 700 + 300 });
    expect(parseProcessStat('12 (a) b) S 1 12 12 0 -1 0 0 0 0 0 5 6 7 8 20')).toEqual({
      pid: 12,
      ppid: 1,
      pgrp: 12,
      ticks: 26,
    });
    expect(parseProcessStat('12 (truncated) S 1 12')).toBeNull();
    expect(parseProcessStat('')).toBeNull();
  });

  it('reads every process under a root, leaving out those that vanished', async () => {
    fs.cpSync(procFixture, root, { recursive: true });
    fs.mkdirSync(path.join(root, '41999')); // exited between readdir and read: no stat
    fs.mkdirSync(path.join(root, '42000'));
    fs.writeFileSync(path.join(root, '42000', 'stat'), 'garbage');
    const processes = await readProcessTable(root);
    expect([...processes.keys()].sort((a, b) => a - b)).toEqual([1, 41870, 41876, 41877, 99999]);
  });

  it("finds each process's job through its parents", async () => {
    const processes = await readProcessTable(procFixture);
    const owners = jobOwners(processes, [{ jobId: JOB_A, pid: 41870 }]);
    expect(Object.fromEntries(owners)).toEqual({
      1: null,
      41870: JOB_A,
      41876: JOB_A,
      41877: JOB_A,
      99999: null,
    });
    expect(jobTicks(processes, owners)).toEqual(new Map([[JOB_A, 6500 + 430000 + 1000]]));
  });

  it('keeps a daemonised child with its job through its process group', () => {
    const processes = table([100, 50, 100], [101, 100, 100], [102, 1, 100], [200, 1, 200], [201, 200, 200]);
    const owners = jobOwners(processes, [
      { jobId: JOB_A, pid: 100 },
      { jobId: JOB_B, pid: 200 },
    ]);
    expect([102, 201].map((pid) => owners.get(pid))).toEqual([JOB_A, JOB_B]);
  });

  it('tolerates vanished processes and a parent loop', () => {
    // 298 exited while /proc was read; so did the job's root 299, after its child 301 was read.
    const processes = table([300, 298, 300], [301, 299, 301], [10, 11, 10], [11, 10, 11], [12, 11, 12]);
    const owners = jobOwners(processes, [{ jobId: JOB_A, pid: 299 }]);
    expect(Object.fromEntries(owners)).toEqual({ 300: null, 301: JOB_A, 10: null, 11: null, 12: null });
  });

  it('gives a job its share of the host CPU between two samples', () => {
    expect(cpuShare(1000, 3000, 8000)).toBe(25);
    expect(cpuShare(undefined, 3000, 8000)).toBeNull(); // the job's first sample
    expect(cpuShare(1000, 3000, null)).toBeNull();
    expect(cpuShare(3000, 1000, 8000)).toBe(0); // a process left the tree unreaped
    expect(cpuShare(0, 8100, 8000)).toBe(100);
  });
});
