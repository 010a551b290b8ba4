/**
 * Which job a process belongs to, and how much CPU each job's processes used. A job's processes
 * are its root process (the command the agent started, leader of its own process group) and
 * everything below it: found through each process's parent (ppid) in /proc/<pid>/stat, or through
 * its process group, which keeps a daemonised child (reparented to init) with its job. Processes
 * come and go while /proc is read: one that vanished is simply not there.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

export interface ProcessStat {
  pid: number;
  ppid: number;
  pgrp: number;
  /**
   * CPU time in clock ticks: the process's own (utime + stime) and that of the children it has
   * reaped (cutime + cstime), so a job's total does not fall when one of its processes exits.
   */
  ticks: number;
}

export type ProcessTable = ReadonlyMap<number, ProcessStat>;

export interface RunningJob {
  jobId: string;
  /** The job's root process. */
  pid: number;
}

/**
 * The fields of /proc/<pid>/stat after the command name, from state (field 3) on: "state ppid pgrp
 * session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime … starttime (22) …".
 * Null when the text has no command name.
 */
export function statFields(text: string): string[] | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')'); // comm may itself hold spaces and parentheses
  if (open < 0 || close < open) return null;
  return text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
}

/** /proc/<pid>/stat: "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime …". */
export function parseProcessStat(text: string): ProcessStat | null {
  const fields = statFields(text);
  if (fields === null || fields.length < 15) return null;
  const pid = Number(text.slice(0, text.indexOf('(')).trim());
  const [ppid, pgrp] = [fields[1], fields[2]].map(Number);
  const [utime, stime, cutime, cstime] = fields.slice(11, 15).map(Number);
  const numbers = [pid, ppid, pgrp, utime, stime, cutime, cstime];
  if (!numbers.every((n) => Number.isSafeInteger(n) && n >= 0)) return null;
  return { pid, ppid, pgrp, ticks: utime + stime + cutime + cstime };
}

/** Every process under root (default /proc); those that exit while it reads are left out. */
export async function readProcessTable(root = '/proc'): Promise<Map<number, ProcessStat>> {
  const pids = (await readdir(root)).filter((entry) => /^\d+$/.test(entry));
  const table = new Map<number, ProcessStat>();
  const CHUNK = 256; // bounded open files
  for (let i = 0; i < pids.length; i += CHUNK) {
    const stats = await Promise.all(
      pids
        .slice(i, i + CHUNK)
        .map((pid) => readFile(path.join(root, pid, 'stat'), 'utf8').then(parseProcessStat, () => null)),
    );
    for (const stat of stats) if (stat) table.set(stat.pid, stat);
  }
  return table;
}

/** The job of every process in the table (null: no job's), walking each chain of parents once. */
export function jobOwners(table: ProcessTable, jobs: Iterable<RunningJob>): Map<number, string | null> {
  const roots = new Map<number, string>();
  for (const job of jobs) roots.set(job.pid, job.jobId);
  const owners = new Map<number, string | null>();

  for (const start of table.keys()) {
    const chain: number[] = [];
    let owner: string | null = null;
    for (let pid = start; ;) {
      const known = owners.get(pid);
      if (known !== undefined) {
        owner = known;
        break;
      }
      const stat = table.get(pid);
      const job = roots.get(pid) ?? (stat ? roots.get(stat.pgrp) : undefined);
      if (job !== undefined) {
        owner = job;
        chain.push(pid);
        break;
      }
      // pid 1 and the kernel's threads (ppid 0) own nothing; a vanished parent ends the walk.
      if (!stat || stat.ppid <= 1 || chain.includes(pid)) {
        chain.push(pid);
        break;
      }
      chain.push(pid);
      pid = stat.ppid;
    }
    for (const pid of chain) if (table.has(pid)) owners.set(pid, owner);
  }
  return owners;
}

/** Each job's CPU ticks: the sum over its processes. Jobs with no process left have none. */
export function jobTicks(
  table: ProcessTable,
  owners: ReadonlyMap<number, string | null>,
): Map<string, number> {
  const ticks = new Map<string, number>();
  for (const [pid, job] of owners) {
    const stat = table.get(pid);
    if (job !== null && stat) ticks.set(job, (ticks.get(job) ?? 0) + stat.ticks);
  }
  return ticks;
}

/**
 * A job's share of the host's CPU (%) between two samples: its ticks over the ticks every CPU of
 * the host counted (from /proc/stat) in the same time. Null when either side is unknown.
 */
export function cpuShare(
  jobBefore: number | undefined,
  jobAfter: number | undefined,
  hostTicks: number | null,
): number | null {
  if (jobBefore === undefined || jobAfter === undefined || hostTicks === null || hostTicks <= 0) return null;
  const share = (Math.max(0, jobAfter - jobBefore) / hostTicks) * 100;
  return Math.min(100, Math.round(share * 10) / 10);
}
