/**
 * Runs the vendors' monitoring tools (nvidia-smi, rocm-smi). A missing tool is an answer ("no GPUs
 * of that kind"), not an error. A tool that hangs is given up on at the timeout: its whole process
 * group gets SIGKILL and the caller gets `timeout` at once, without waiting for the process to
 * go, because a tool stuck in the kernel (a wedged driver) cannot die until the driver lets it.
 * Until such a run has exited, the same command is not started again (`stuck`), so a wedged
 * driver costs one process, not one per sample. A tool found missing is taken to be missing for
 * `missingRecheckMs` before it is looked for again: on a CPU-only node (most of a fleet), every
 * sample would otherwise fork the agent for each vendor's tool only to learn it is not there
 * (~4 ms of CPU each on our 2-core host), while a driver installed later is still seen within
 * minutes.
 */
import { spawn } from 'node:child_process';

export type ToolResult =
  | { status: 'ok'; stdout: string }
  /** The tool is not installed (ENOENT): no GPUs of that kind. */
  | { status: 'missing' }
  | { status: 'timeout'; timeoutMs: number }
  /** It ran and failed; reason is its exit status and first line of output, bounded. */
  | { status: 'failed'; reason: string }
  /** The previous run of the same command was killed on timeout and has not exited yet. */
  | { status: 'stuck' };

export type RunTool = (file: string, args: readonly string[]) => Promise<ToolResult>;

export interface ToolRunnerOptions {
  timeoutMs?: number;
  /** Output beyond this is a failure (a tool printing without end must not fill the agent's memory). */
  maxOutputBytes?: number;
  /** The tools' environment (and PATH, where they are looked up); the agent's own by default. */
  env?: Readonly<Record<string, string | undefined>>;
  /** How long a tool found missing is answered `missing` without looking again; default 5 min. */
  missingRecheckMs?: number;
}

export const DEFAULT_TOOL_TIMEOUT_MS = 5000;
export const DEFAULT_MISSING_RECHECK_MS = 5 * 60_000;
const DEFAULT_MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
const MAX_REASON_CHARS = 200;

export function createToolRunner(options: ToolRunnerOptions = {}): RunTool {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  const maxOutputBytes = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const missingRecheckMs = options.missingRecheckMs ?? DEFAULT_MISSING_RECHECK_MS;
  const running = new Set<string>();
  /** Tools found missing, and when they may be looked for again. */
  const missingUntil = new Map<string, number>();

  return (file, args) => {
    const key = JSON.stringify([file, ...args]);
    if (running.has(key)) return Promise.resolve({ status: 'stuck' });
    if ((missingUntil.get(file) ?? 0) > performance.now()) return Promise.resolve({ status: 'missing' });
    missingUntil.delete(file);
    running.add(key);
    return new Promise((resolve) => {
      let settled = false;
      const finish = (result: ToolResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };

      const child = spawn(file, [...args], {
        env: options.env ? { ...options.env } : undefined,
        stdio: ['ignore', 'pipe', 'pipe'],
        shell: false,
        detached: true, // its own process group, so the kill reaches what it started
      });
      const killGroup = () => {
        if (child.pid === undefined) return;
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // ESRCH: already gone
        }
      };
      const abandon = (result: ToolResult) => {
        killGroup();
        child.stdout.destroy();
        child.stderr.destroy();
        finish(result);
      };

      const timer = setTimeout(() => abandon({ status: 'timeout', timeoutMs }), timeoutMs);
      const stdout: Buffer[] = [];
      let stdoutBytes = 0;
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => {
        stdoutBytes += chunk.byteLength;
        if (stdoutBytes > maxOutputBytes) {
          abandon({ status: 'failed', reason: `${file}: more than ${maxOutputBytes} bytes of output` });
        } else {
          stdout.push(chunk);
        }
      });
      child.stderr.on('data', (chunk: Buffer) => {
        if (stderr.length < MAX_REASON_CHARS) stderr += chunk.toString('utf8');
      });
      child.stdout.on('error', () => undefined);
      child.stderr.on('error', () => undefined);

      child.on('error', (err: NodeJS.ErrnoException) => {
        if (child.pid !== undefined) return; // a failed kill; 'close' still comes
        running.delete(key);
        if (err.code === 'ENOENT') {
          missingUntil.set(file, performance.now() + missingRecheckMs);
          finish({ status: 'missing' });
        } else {
          finish({ status: 'failed', reason: bounded(`${file}: ${err.code ?? err.message}`) });
        }
      });
      child.on('exit', () => {
        running.delete(key);
        killGroup(); // whatever it left behind in its group
      });
      child.on('close', (code, signal) => {
        if (child.pid === undefined) return; // never started: 'error' answers
        const out = Buffer.concat(stdout).toString('utf8');
        if (code === 0) return finish({ status: 'ok', stdout: out });
        const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
        const said = firstLine(stderr) || firstLine(out);
        finish({ status: 'failed', reason: bounded(`${file} ${how}${said ? `: ${said}` : ''}`) });
      });
    });
  };
}

function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((line) => line.trim())
      .find((line) => line !== '') ?? ''
  );
}

function bounded(text: string): string {
  return text.slice(0, MAX_REASON_CHARS);
}
