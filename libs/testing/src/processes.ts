import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from './paths.js';

/** Every process a test starts logs to .tmp/logs/<name>-<pid>.log, for reading after a failure. */
const LOG_DIR = `${REPO_ROOT}.tmp/logs`;

/** Children still running; killed if the test process exits first, so none is left behind. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** A child process whose output lines are kept, so tests can wait for a line and show logs on failure. */
export class Proc {
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  private listeners = new Set<(line: string) => void>();

  readonly logFile: string;

  constructor(
    readonly child: ChildProcess,
    name = 'proc',
  ) {
    mkdirSync(LOG_DIR, { recursive: true });
    this.logFile = `${LOG_DIR}/${name}-${child.pid}.log`;
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        this.lines.push(line);
        appendFileSync(this.logFile, `${line}\n`);
        if (this.lines.length > 5000) this.lines.shift();
        for (const l of this.listeners) l(line);
      });
    }
    live.add(child);
    this.exited = new Promise((done) =>
      child.once('exit', (code) => {
        live.delete(child);
        done(code);
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first line (already seen or to come) that matches. */
  waitForLine(match: (line: string) => boolean, timeoutMs = 20_000): Promise<string> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((done, fail) => {
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        fail(
          new Error(
            `no matching line within ${timeoutMs} ms; last lines:\n${this.lines.slice(-30).join('\n')}`,
          ),
        );
      }, timeoutMs);
      const listener = (line: string) => {
        if (!match(line)) return;
        clearTimeout(timer);
        this.listeners.delete(listener);
        done(line);
      };
      this.listeners.add(listener);
      void this.exited.then((code) => {
        if (!this.listeners.has(listener)) return;
        clearTimeout(timer);
        this.listeners.delete(listener);
        fail(
          new Error(
            `process exited (${code}) before the line appeared; last lines:\n${this.lines.slice(-30).join('\n')}`,
          ),
        );
      });
    });
  }

  kill9() {
    if (this.running) this.child.kill('SIGKILL');
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<number | null> {
    if (!this.running) return this.child.exitCode;
    const timer = setTimeout(() => this.kill9(), graceMs);
    this.child.kill('SIGTERM');
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

export function startProcess(
  cmd: string,
  args: string[],
  env: Record<string, string | undefined> = {},
  name = 'proc',
): Proc {
  return new Proc(
    spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }),
    name,
  );
}

/** Runs a command to completion; resolves with its exit code and output. */
export async function runProcess(
  cmd: string,
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((done) => child.once('exit', (c) => done(c)));
  return { code, stdout, stderr };
}

/** A TCP port on 127.0.0.1 that was free a moment ago, for a server a test configures by port. */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
