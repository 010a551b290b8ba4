/**
 * Runs a `command` job: no shell, its own process group (so a timeout or cancel reaches every
 * process it started), stdin closed, the full output appended to a log file and each line handed
 * to onLine (the file stops at maxLogBytes). Never throws: a command that cannot start, or whose
 * working directory cannot be made, is a FAILED result with a short reason.
 *
 * A process can leave the group (setsid, setpgid, a double fork: nohup, Ray, Dask, jupyter
 * kernels). So every process of the job carries an environment cookie (the attempt id), and when
 * the main process exits, the processes that carry it are killed too (process-reaper.ts, Linux
 * only); the run is done only once they are gone, so a GPU is not handed on while they hold it.
 * Not covered: a process that clears its environment before exec, or one we may not read
 * (setuid). A cgroup per job (systemd `Delegate=yes`, killed with `cgroup.kill`) would be the
 * complete fix.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JobOutcome } from '@hearth/contracts';
import { LineSplitter, type LineGate } from './line-splitter.js';
import type { OutputStream } from './log-tail.js';
import { reapEscaped, signalGroupExcept, type EnvCookie, type ReapResult } from './process-reaper.js';

export interface CommandSpec {
  command: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd: string;
  logFile: string;
  /** Null: no timeout. */
  timeoutSeconds: number | null;
  cancelGraceSeconds: number;
  /**
   * The env entry that marks the job's processes, put into its env; by default HEARTH_ATTEMPT_ID,
   * when the env has it. Without one, what leaves the process group is not stopped.
   */
  cookie?: EnvCookie;
  /**
   * The command is a sandbox's launcher (sandbox.ts) that runs the job: a cancel's SIGTERM goes to
   * the job's processes, not to the launcher, which would die at once and take the job with it.
   */
  sandboxed?: boolean;
}

/**
 * How an attempt ended here: a job outcome, or RELEASED, given back unfinished because the agent
 * stopped (reported as job.released; the control plane queues the job again).
 */
export type AttemptOutcome = JobOutcome | 'RELEASED';

export interface CommandResult {
  outcome: AttemptOutcome;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  reason: string | null;
}

export interface CommandRun {
  /** The process (and process group) id; undefined when the command could not start. */
  readonly pid: number | undefined;
  /** Once the main process has exited, and what the job left outside its group is gone too. */
  readonly done: Promise<CommandResult>;
  /** SIGTERM to the group, SIGKILL after graceSeconds; the outcome is CANCELLED. */
  cancel(graceSeconds: number, reason?: string): void;
  /** SIGKILL to the group at once (the agent stops); the outcome is RELEASED. */
  kill(reason: string): void;
}

/** After the main process exits, how long its output pipes may stay open before we stop reading. */
const CLOSE_GRACE_MS = 5000;
/** The full log on disk stops here (the tail still flows): a chatty job must not fill the disk. */
export const MAX_LOG_FILE_BYTES = 1024 ** 3;
const LOG_FLUSH_WAIT_MS = 5000;
/** The env entry that marks a job's processes when the spec names none (the job runner sets it). */
const ATTEMPT_ID_KEY = 'HEARTH_ATTEMPT_ID';
type Reaped = Pick<ReapResult, 'killed' | 'survivors'>;
const NOTHING_REAPED: Reaped = { killed: 0, survivors: 0 };

export function startCommand(
  spec: CommandSpec,
  onLine: (stream: OutputStream, text: string) => void,
  maxLogBytes = MAX_LOG_FILE_BYTES,
  gate?: LineGate,
): CommandRun {
  try {
    fs.mkdirSync(spec.cwd, { recursive: true, mode: 0o700 });
    fs.mkdirSync(path.dirname(spec.logFile), { recursive: true, mode: 0o700 });
  } catch (err) {
    // A full disk or a broken data dir: the attempt is claimed, so it must still get an outcome.
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return notStarted(`cannot create the job's working directory or log: ${code}`);
  }
  const log = fs.createWriteStream(spec.logFile, { flags: 'a', mode: 0o600 });
  let logBytes = 0;
  let logFailed = false;

  const cookie = spec.cookie ?? attemptCookie(spec.env);
  const [file, ...args] = spec.command;
  const child = spawn(file, args, {
    cwd: spec.cwd,
    env: cookie ? { ...spec.env, [cookie.key]: cookie.value } : { ...spec.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    shell: false,
    detached: true,
  });

  let settled = false;
  let stopping: { outcome: AttemptOutcome; reason: string } | null = null;
  let killTimer: NodeJS.Timeout | undefined;
  let closeTimer: NodeJS.Timeout | undefined;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  /** Stopping what left the group: started as the main process exits, awaited before done. */
  let reaping = Promise.resolve(NOTHING_REAPED);
  let resolveDone!: (result: CommandResult) => void;
  const done = new Promise<CommandResult>((resolve) => (resolveDone = resolve));

  // Backpressure: while the log file is behind, both pipes pause and the job blocks on its
  // writes, instead of its output piling up in the agent's memory.
  const pipes = [child.stdout, child.stderr];
  const resume = () => pipes.forEach((pipe) => pipe.resume());
  log.on('drain', resume);
  // A full disk must not crash the agent, nor hold the job: the log stops, the tail still flows.
  log.on('error', () => {
    logFailed = true;
    resume();
  });
  const writeLog = (chunk: Buffer) => {
    if (logFailed || logBytes >= maxLogBytes) return;
    logBytes += chunk.length;
    const full = logBytes >= maxLogBytes;
    const behind = !log.write(full ? chunk.subarray(0, chunk.length - (logBytes - maxLogBytes)) : chunk);
    if (full)
      log.write(`\n[hearth-agent: the log stops here, at ${maxLogBytes} bytes; the job's output goes on]\n`);
    else if (behind) pipes.forEach((pipe) => pipe.pause());
  };
  const splitters = (['stdout', 'stderr'] as const).map((stream) => {
    const splitter = new LineSplitter((text) => onLine(stream, text), undefined, gate);
    const pipe = child[stream];
    pipe.on('data', (chunk: Buffer) => {
      writeLog(chunk);
      splitter.push(chunk);
    });
    pipe.on('error', () => undefined);
    return splitter;
  });

  const signalGroup = (signal: NodeJS.Signals) => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // ESRCH: the group is already gone
    }
  };

  const terminate = (outcome: JobOutcome, reason: string, graceSeconds: number) => {
    // Once the main process has exited the job is over, however it ends: its outcome stands.
    if (settled || stopping || exit) return;
    stopping = { outcome, reason };
    if (spec.sandboxed && child.pid !== undefined) void signalGroupExcept(child.pid, 'SIGTERM', child.pid);
    else signalGroup('SIGTERM');
    killTimer = setTimeout(() => signalGroup('SIGKILL'), graceSeconds * 1000);
  };

  const { timeoutSeconds } = spec;
  const timeoutTimer =
    timeoutSeconds === null
      ? undefined
      : setTimeout(
          () => terminate('TIMED_OUT', `timed out after ${timeoutSeconds}s`, spec.cancelGraceSeconds),
          timeoutSeconds * 1000,
        );

  // The group has had its SIGKILL: what is left of it is dying, and is not what escaped.
  const reap = (): Promise<Reaped> =>
    cookie && child.pid !== undefined
      ? reapEscaped(cookie, { skipGroup: child.pid }).catch(() => NOTHING_REAPED)
      : Promise.resolve(NOTHING_REAPED);

  const settle = (result: CommandResult) => {
    if (settled) return;
    settled = true;
    clearTimeout(timeoutTimer);
    clearTimeout(killTimer);
    clearTimeout(closeTimer);
    for (const splitter of splitters) splitter.end();
    void finish(result);
  };

  const finish = async (result: CommandResult) => {
    // Reaped as the main process exited; once more for what forked meanwhile: done must not come
    // while any remain.
    const first = await reaping;
    const last = await reap();
    const notice = reapNotice(first.killed + last.killed, last.survivors);
    if (notice) {
      if (!logFailed) log.write(`${notice}\n`);
      onLine('stderr', notice);
    }
    // Done means the log is on disk too (a disk that hangs holds the result a few seconds at most).
    const flushed = finished(log.end()).catch(() => undefined);
    await Promise.race([flushed, sleep(LOG_FLUSH_WAIT_MS, undefined, { ref: false })]);
    resolveDone(result);
  };

  const classify = (code: number | null, signal: NodeJS.Signals | null): CommandResult => {
    if (stopping) return { outcome: stopping.outcome, exitCode: code, signal, reason: stopping.reason };
    if (code === 0) return { outcome: 'SUCCEEDED', exitCode: 0, signal: null, reason: null };
    const reason = signal ? `killed by ${signal}` : `exited with code ${code}`;
    return { outcome: 'FAILED', exitCode: code, signal, reason };
  };

  child.on('error', (err: NodeJS.ErrnoException) => {
    if (child.pid !== undefined) return; // e.g. a failed kill: the exit event still comes
    settle({
      outcome: 'FAILED',
      exitCode: null,
      signal: null,
      reason: `spawn failed: ${err.code ?? 'error'}: ${file}`.slice(0, 512),
    });
  });

  child.on('exit', (code, signal) => {
    exit = { code, signal };
    clearTimeout(timeoutTimer);
    // The job is over when its main process is: whatever it left behind in its group goes too,
    // and so does what left the group (at once: it may hold the output pipes open).
    signalGroup('SIGKILL');
    reaping = reap();
    closeTimer = setTimeout(() => {
      child.stdout.destroy();
      child.stderr.destroy();
      settle(classify(code, signal));
    }, CLOSE_GRACE_MS);
  });

  child.on('close', (code, signal) => {
    settle(classify(exit?.code ?? code, exit?.signal ?? signal));
  });

  return {
    pid: child.pid,
    done,
    cancel: (graceSeconds, reason = 'cancelled') => terminate('CANCELLED', reason, graceSeconds),
    kill: (reason) => {
      if (settled || exit) return; // exited: the group was killed then, and the outcome stands
      stopping ??= { outcome: 'RELEASED', reason };
      signalGroup('SIGKILL');
    },
  };
}

/** The default cookie: the attempt id, when the env has it. */
function attemptCookie(env: Readonly<Record<string, string>>): EnvCookie | null {
  const value = env[ATTEMPT_ID_KEY];
  return value ? { key: ATTEMPT_ID_KEY, value } : null;
}

/** The line that tells the user why processes of the job died after it ended; null: none did. */
function reapNotice(killed: number, survivors: number): string | null {
  const processes = (n: number) => `${n} process${n === 1 ? '' : 'es'}`;
  const done = [
    ...(killed > 0 ? [`stopped ${processes(killed)}`] : []),
    ...(survivors > 0 ? [`could not stop ${processes(survivors)}`] : []),
  ];
  if (done.length === 0) return null;
  return `[hearth-agent: ${done.join(' and ')} the job left running outside its process group]`;
}

/** A run that never started: FAILED at once, with the reason. */
function notStarted(reason: string): CommandRun {
  return {
    pid: undefined,
    done: Promise.resolve({ outcome: 'FAILED', exitCode: null, signal: null, reason }),
    cancel: () => undefined,
    kill: () => undefined,
  };
}
