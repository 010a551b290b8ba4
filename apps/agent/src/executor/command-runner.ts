/**
 * Runs a `command` job: no shell, its own process group (so a timeout or cancel reaches every
 * process it started), stdin closed, the full output appended to a log file and each line handed
 * to onLine. Never throws: a command that cannot start is a FAILED result with a short reason.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { JobOutcome } from '@hearth/contracts';
import { LineSplitter } from './line-splitter.js';
import type { OutputStream } from './log-tail.js';

export interface CommandSpec {
  command: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd: string;
  logFile: string;
  /** Null: no timeout. */
  timeoutSeconds: number | null;
  cancelGraceSeconds: number;
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
  readonly done: Promise<CommandResult>;
  /** SIGTERM to the group, SIGKILL after graceSeconds; the outcome is CANCELLED. */
  cancel(graceSeconds: number, reason?: string): void;
  /** SIGKILL to the group at once (the agent stops); the outcome is RELEASED. */
  kill(reason: string): void;
}

/** After the main process exits, how long its output pipes may stay open before we stop reading. */
const CLOSE_GRACE_MS = 5000;

export function startCommand(
  spec: CommandSpec,
  onLine: (stream: OutputStream, text: string) => void,
): CommandRun {
  fs.mkdirSync(spec.cwd, { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.dirname(spec.logFile), { recursive: true, mode: 0o700 });
  const log = fs.createWriteStream(spec.logFile, { flags: 'a', mode: 0o600 });
  log.on('error', () => undefined); // a full disk must not crash the agent; the tail still flows

  const [file, ...args] = spec.command;
  const child = spawn(file, args, {
    cwd: spec.cwd,
    env: { ...spec.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    shell: false,
    detached: true,
  });

  let settled = false;
  let stopping: { outcome: AttemptOutcome; reason: string } | null = null;
  let killTimer: NodeJS.Timeout | undefined;
  let closeTimer: NodeJS.Timeout | undefined;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  let resolveDone!: (result: CommandResult) => void;
  const done = new Promise<CommandResult>((resolve) => (resolveDone = resolve));

  const splitters = (['stdout', 'stderr'] as const).map((stream) => {
    const splitter = new LineSplitter((text) => onLine(stream, text));
    const pipe = child[stream];
    pipe.on('data', (chunk: Buffer) => {
      log.write(chunk);
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
    if (settled || stopping) return;
    stopping = { outcome, reason };
    signalGroup('SIGTERM');
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

  const settle = (result: CommandResult) => {
    if (settled) return;
    settled = true;
    clearTimeout(timeoutTimer);
    clearTimeout(killTimer);
    clearTimeout(closeTimer);
    for (const splitter of splitters) splitter.end();
    log.end();
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
    // The job is over when its main process is: whatever it left behind in its group goes too.
    signalGroup('SIGKILL');
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
      if (settled) return;
      stopping ??= { outcome: 'RELEASED', reason };
      signalGroup('SIGKILL');
    },
  };
}
