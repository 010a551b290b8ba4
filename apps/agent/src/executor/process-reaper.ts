/**
 * Finds and kills the processes that carry an environment "cookie" (an entry such as
 * `HEARTH_ATTEMPT_ID=<id>`, which every descendant inherits), wherever they are in the process
 * tree: the way Jenkins' ProcessTreeKiller catches what left a job's process group. Linux only
 * (it reads /proc); elsewhere it does nothing and says so. A process that cleared its environment
 * before exec, or whose environ we may not read (setuid), is not found.
 */
import { access, readFile, readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { readProcessTable, statFields, type ProcessStat } from '../telemetry/process-tree.js';

/** An environment entry `key=value` that marks a process as one to reap. */
export interface EnvCookie {
  key: string;
  value: string;
}

export interface ReapOptions {
  /** Leave the processes of this process group alone (the caller signals the group itself). */
  skipGroup?: number;
  /** Give up after this long; what is left is counted as survivors. */
  limitMs?: number;
  /** Where the process table is: /proc, but in tests. */
  procRoot?: string;
}

export interface ReapResult {
  /** False where there is no /proc to read (not Linux): nothing was looked for. */
  supported: boolean;
  /** Processes killed with SIGKILL that have since died. */
  killed: number;
  /** Processes still alive when the limit passed (killed but not dead yet, or not ours to kill). */
  survivors: number;
}

const REAP_LIMIT_MS = 5000;
const UNSUPPORTED: ReapResult = { supported: false, killed: 0, survivors: 0 };
/** Between passes: a process may fork after a pass has read its table. */
const PASS_PAUSE_MS = 10;

/** A process, as /proc names it: its pid and start time (so a reused pid is not taken for it). */
interface Proc {
  pid: number;
  startTime: string;
}

/**
 * Kills every process whose environment holds the cookie's exact entry, again and again until a
 * pass finds none alive (a zombie counts as gone: it holds nothing but its pid) or the limit passes.
 * Never throws.
 */
export async function reapEscaped(cookie: EnvCookie, options: ReapOptions = {}): Promise<ReapResult> {
  const { skipGroup, limitMs = REAP_LIMIT_MS, procRoot = '/proc' } = options;
  if (process.platform !== 'linux' || !(await exists(procRoot))) return UNSUPPORTED;
  const entry = Buffer.from(`${cookie.key}=${cookie.value}`);
  const deadline = Date.now() + limitMs;
  // Killed, not yet seen dead: a process that has lost its memory (and so its environ) may still
  // hold its files (a GPU, a pipe) for a moment, until it is a zombie.
  const dying = new Map<number, string>();
  let killed = 0;
  for (;;) {
    const found = await findCarriers(procRoot, entry, skipGroup);
    let refused = 0;
    for (const proc of found) {
      const error = sigkill(proc.pid);
      if (error === 'EPERM') refused++;
      else if (error === null && dying.get(proc.pid) !== proc.startTime) {
        dying.set(proc.pid, proc.startTime);
        killed++;
      }
    }
    await Promise.all(
      [...dying].map(async ([pid, startTime]) => {
        if (!(await isAlive(procRoot, pid, startTime))) dying.delete(pid);
      }),
    );
    if (found.length === 0 && dying.size === 0) return { supported: true, killed, survivors: 0 };
    if (Date.now() >= deadline) {
      return { supported: true, killed: killed - dying.size, survivors: dying.size + refused };
    }
    await sleep(PASS_PAUSE_MS);
  }
}

/**
 * Sends `signal` to the living members of a process group but one (`except`). For a sandboxed job:
 * its group leader is the sandbox's launcher, which a SIGTERM kills at once, ending the job without
 * its grace period; the job's own processes, members of the same group, get it instead.
 */
export async function signalGroupExcept(
  pgid: number,
  signal: NodeJS.Signals,
  except: number,
  procRoot = '/proc',
): Promise<void> {
  const table = await readProcessTable(procRoot).catch(() => new Map<number, ProcessStat>());
  for (const { pid, pgrp } of table.values()) {
    if (pgrp !== pgid || pid === except) continue;
    try {
      process.kill(pid, signal);
    } catch {
      // gone meanwhile
    }
  }
}

/** The living processes that carry the entry. */
async function findCarriers(procRoot: string, entry: Buffer, skipGroup?: number): Promise<Proc[]> {
  const names = await readdir(procRoot).catch(() => []);
  const pids = names.filter((name) => /^\d+$/.test(name)).map(Number);
  const found = await Promise.all(
    pids.map(async (pid): Promise<Proc | null> => {
      if (pid === process.pid) return null;
      try {
        if (!hasEntry(await readFile(`${procRoot}/${pid}/environ`), entry)) return null;
        const stat = parseStat(await readFile(`${procRoot}/${pid}/stat`, 'latin1'));
        if (stat.state === 'Z' || stat.pgrp === skipGroup) return null;
        return { pid, startTime: stat.startTime };
      } catch {
        return null; // EACCES (another user's, or setuid), ENOENT/ESRCH (gone while we looked)
      }
    }),
  );
  return found.filter((proc) => proc !== null);
}

/** Whether a NUL-separated environ holds the entry whole: `K=abc` does not match `K=abcd` or `XK=abc`. */
function hasEntry(environ: Buffer, entry: Buffer): boolean {
  for (let at = environ.indexOf(entry); at !== -1; at = environ.indexOf(entry, at + 1)) {
    const end = at + entry.length;
    if ((at === 0 || environ[at - 1] === 0) && (end === environ.length || environ[end] === 0)) return true;
  }
  return false;
}

/** The fields we need of /proc/<pid>/stat: state (field 3), pgrp (5), starttime (22). */
function parseStat(stat: string): { state: string; pgrp: number; startTime: string } {
  const fields = statFields(stat) ?? [];
  return { state: fields[0], pgrp: Number(fields[2]), startTime: fields[19] };
}

/** Not a zombie, not gone, and not a new process that got the pid meanwhile. */
async function isAlive(procRoot: string, pid: number, startTime: string): Promise<boolean> {
  try {
    const stat = parseStat(await readFile(`${procRoot}/${pid}/stat`, 'latin1'));
    return stat.state !== 'Z' && stat.startTime === startTime;
  } catch {
    return false;
  }
}

async function exists(dir: string): Promise<boolean> {
  return access(dir).then(
    () => true,
    () => false,
  );
}

/** Null when the signal was sent; else the error: ESRCH (already gone), EPERM (not ours to kill). */
function sigkill(pid: number): string | null {
  try {
    process.kill(pid, 'SIGKILL');
    return null;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'error';
  }
}
