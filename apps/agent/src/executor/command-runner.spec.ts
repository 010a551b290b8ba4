import { afterAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isAlive, livingProcesses } from '@hearth/testing';
import { startCommand, type CommandRun, type CommandSpec } from './command-runner.js';
import type { OutputStream } from './log-tail.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-runner-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

let n = 0;
function spec(command: string[], extra: Partial<CommandSpec> = {}): CommandSpec {
  const dir = path.join(root, String(n++));
  return {
    command,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    cwd: path.join(dir, 'work'),
    logFile: path.join(dir, 'logs', 'attempt.log'),
    timeoutSeconds: 30,
    cancelGraceSeconds: 5,
    ...extra,
  };
}

function collect() {
  const lines: { stream: OutputStream; text: string }[] = [];
  const waiters: { match: string; resolve: (text: string) => void }[] = [];
  const onLine = (stream: OutputStream, text: string) => {
    lines.push({ stream, text });
    for (const w of waiters.filter((w) => text.includes(w.match))) w.resolve(text);
  };
  const waitFor = (match: string) => new Promise<string>((resolve) => waiters.push({ match, resolve }));
  return { lines, onLine, waitFor };
}

/** Every process the escape tests start carries it, so afterAll can stop what a failed test left. */
const RUN_MARK = randomUUID();
afterAll(() => {
  for (const pid of livingProcesses((p) => p.environ.includes(`HEARTH_TEST_RUN=${RUN_MARK}`)))
    process.kill(pid, 'SIGKILL');
});

/**
 * A shell script that starts `sleep 300` in a session of its own (setsid: out of the job's process
 * group), waits until it is there, and prints `escaped=<its pid>`. The escaped process holds the
 * job's output pipes open only when told to.
 */
function escapeScript(holdsPipes = false): string {
  const redirect = holdsPipes ? '' : ' >/dev/null 2>&1';
  return (
    `setsid sh -c 'echo $$ > escaped.pid; exec sleep 300'${redirect} & ` +
    'until [ -s escaped.pid ]; do sleep 0.01; done; echo escaped=$(cat escaped.pid)'
  );
}

/** A job that runs the script, with a cookie of its own (or none), and what it hands to onLine. */
function escaping(script: string, extra: Partial<CommandSpec> = {}) {
  const out = collect();
  const s = spec(['sh', '-c', script], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HEARTH_TEST_RUN: RUN_MARK },
    cookie: { key: 'HEARTH_ATTEMPT_ID', value: randomUUID() },
    ...extra,
  });
  const run = startCommand(s, out.onLine);
  const escaped = out.waitFor('escaped=').then((line) => Number(line.split('=')[1]));
  return { s, run, out, escaped };
}

const STOPPED_ONE = '[hearth-agent: stopped 1 process the job left running outside its process group]';

/**
 * The group's living members once they had `withinMs` to finish dying. A member killed with the
 * group closes its pipes (which ends the run) a moment before the kernel marks it a zombie, so a
 * read at once can still see it running.
 */
async function membersLeft(pgid: number, withinMs = 2000): Promise<number[]> {
  const until = Date.now() + withinMs;
  let left = livingProcesses((p) => p.pgrp === pgid);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    left = livingProcesses((p) => p.pgrp === pgid);
  }
  return left;
}

describe('startCommand', () => {
  it('runs a command to success, with its output as lines and in the log file', async () => {
    const out = collect();
    const s = spec(['node', '-e', 'console.log("hello"); console.error("careful"); console.log("bye")']);
    const result = await startCommand(s, out.onLine).done;
    expect(result).toEqual({ outcome: 'SUCCEEDED', exitCode: 0, signal: null, reason: null });
    expect(out.lines).toEqual(
      expect.arrayContaining([
        { stream: 'stdout', text: 'hello' },
        { stream: 'stderr', text: 'careful' },
        { stream: 'stdout', text: 'bye' },
      ]),
    );
    const log = fs.readFileSync(s.logFile, 'utf8');
    expect(log).toContain('hello\n');
    expect(log).toContain('careful\n');
    expect(fs.statSync(s.logFile).mode & 0o777).toBe(0o600);
  });

  it('reports a non-zero exit code as FAILED', async () => {
    const result = await startCommand(spec(['sh', '-c', 'exit 3']), () => undefined).done;
    expect(result).toEqual({ outcome: 'FAILED', exitCode: 3, signal: null, reason: 'exited with code 3' });
  });

  it('runs without a shell: metacharacters are passed literally', async () => {
    const out = collect();
    const s = spec(['echo', '$HOME;rm -rf x']);
    fs.mkdirSync(s.cwd, { recursive: true });
    fs.writeFileSync(path.join(s.cwd, 'x'), 'keep me');
    const result = await startCommand(s, out.onLine).done;
    expect(result.outcome).toBe('SUCCEEDED');
    expect(out.lines).toEqual([{ stream: 'stdout', text: '$HOME;rm -rf x' }]);
    expect(fs.readFileSync(path.join(s.cwd, 'x'), 'utf8')).toBe('keep me');
  });

  it('gives the process only the env it is given, in the work dir', async () => {
    const out = collect();
    const s = spec(
      ['node', '-e', 'console.log(JSON.stringify([process.cwd(), Object.keys(process.env).sort()]))'],
      {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', FOO: 'bar' },
      },
    );
    await startCommand(s, out.onLine).done;
    const [cwd, keys] = JSON.parse(out.lines[0].text) as [string, string[]];
    expect(fs.realpathSync(cwd)).toBe(fs.realpathSync(s.cwd));
    expect(keys).toEqual(['FOO', 'PATH']);
  });

  it('times out: TIMED_OUT, and the whole process group is gone', async () => {
    const out = collect();
    const s = spec(['sh', '-c', 'sleep 60 & echo child=$!; sleep 60'], {
      timeoutSeconds: 1,
      cancelGraceSeconds: 1,
    });
    const run = startCommand(s, out.onLine);
    const childLine = await out.waitFor('child=');
    const grandchild = Number(childLine.split('=')[1]);
    expect(livingProcesses((p) => p.pgrp === run.pid)).toEqual(expect.arrayContaining([run.pid, grandchild]));
    const started = Date.now();
    const result = await run.done;
    expect(result.outcome).toBe('TIMED_OUT');
    expect(result.reason).toBe('timed out after 1s');
    expect(result.exitCode).toBeNull();
    expect(result.signal).toBe('SIGTERM');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await membersLeft(run.pid!)).toEqual([]);
  });

  it('cancels: SIGTERM first, SIGKILL after the grace when the process ignores SIGTERM', async () => {
    const out = collect();
    const s = spec([
      'node',
      '-e',
      "process.on('SIGTERM',()=>console.log('ignoring SIGTERM'));console.log('ready');setInterval(()=>{},1000)",
    ]);
    const run = startCommand(s, out.onLine);
    await out.waitFor('ready');
    const started = Date.now();
    run.cancel(1);
    const result = await run.done;
    const elapsed = Date.now() - started;
    expect(result).toEqual({ outcome: 'CANCELLED', exitCode: null, signal: 'SIGKILL', reason: 'cancelled' });
    expect(out.lines.map((l) => l.text)).toContain('ignoring SIGTERM');
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(5000);
    expect(await membersLeft(run.pid!)).toEqual([]);
  });

  it('cancels a process that stops on SIGTERM without waiting for the grace', async () => {
    const out = collect();
    const run = startCommand(
      spec(['node', '-e', "console.log('ready');setInterval(()=>{},1000)"]),
      out.onLine,
    );
    await out.waitFor('ready');
    const started = Date.now();
    run.cancel(30, 'cancelled by the control plane');
    const result = await run.done;
    expect(result).toEqual({
      outcome: 'CANCELLED',
      exitCode: null,
      signal: 'SIGTERM',
      reason: 'cancelled by the control plane',
    });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('gives back a command the agent kills as it stops (RELEASED), unless a cancel came first', async () => {
    const out = collect();
    const stubborn = "process.on('SIGTERM',()=>{});console.log('ready');setInterval(()=>{},1000)";
    const run = startCommand(spec(['node', '-e', stubborn]), out.onLine);
    await out.waitFor('ready');
    run.kill('agent stopped: drain timeout of 30s');
    expect(await run.done).toEqual({
      outcome: 'RELEASED',
      exitCode: null,
      signal: 'SIGKILL',
      reason: 'agent stopped: drain timeout of 30s',
    });
    expect(await membersLeft(run.pid!)).toEqual([]);

    const cancelled = collect();
    const second = startCommand(spec(['node', '-e', stubborn]), cancelled.onLine);
    await cancelled.waitFor('ready');
    second.cancel(30, 'cancelled by the control plane');
    second.kill('agent stopped (forced)');
    expect(await second.done).toMatchObject({
      outcome: 'CANCELLED',
      reason: 'cancelled by the control plane',
    });
  });

  it('reports a command that cannot start as FAILED with a reason, without throwing', async () => {
    const result = await startCommand(spec(['hearth-no-such-command-xyz', '--flag']), () => undefined).done;
    expect(result).toEqual({
      outcome: 'FAILED',
      exitCode: null,
      signal: null,
      reason: 'spawn failed: ENOENT: hearth-no-such-command-xyz',
    });
  });

  it('does not wait for background processes that hold the output open after the main one exits', async () => {
    const started = Date.now();
    const result = await startCommand(spec(['sh', '-c', 'sleep 60 & echo started']), () => undefined).done;
    expect(result.outcome).toBe('SUCCEEDED');
    expect(Date.now() - started).toBeLessThan(8000);
  });

  it('keeps the outcome of a command that exited when a timeout, cancel or stop comes after it', async () => {
    // The main process exits 0 at once; a process in a session of its own keeps stdout open for
    // 1.5 s, so the run settles only then, and the timeout (1 s), a cancel or a stop land before.
    const lingering = ['sh', '-c', 'setsid sleep 1.5 & echo done'];
    const timedOut = startCommand(spec(lingering, { timeoutSeconds: 1 }), () => undefined);
    const cancelled = startCommand(spec(lingering), () => undefined);
    const stopped = startCommand(spec(lingering), () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 500));
    cancelled.cancel(5);
    stopped.kill('agent stopping');
    for (const run of [timedOut, cancelled, stopped]) {
      expect(await run.done).toEqual({ outcome: 'SUCCEEDED', exitCode: 0, signal: null, reason: null });
    }
  });

  it('fails, without throwing, when the working directory cannot be made', async () => {
    const blocked = spec(['true']);
    fs.mkdirSync(path.dirname(blocked.cwd), { recursive: true });
    fs.writeFileSync(blocked.cwd, 'a file where the directory should be');
    const run = startCommand({ ...blocked, cwd: path.join(blocked.cwd, 'job') }, () => undefined);
    expect(run.pid).toBeUndefined();
    expect(await run.done).toEqual({
      outcome: 'FAILED',
      exitCode: null,
      signal: null,
      reason: "cannot create the job's working directory or log: ENOTDIR",
    });
    run.cancel(1); // nothing to stop: no effect
  });

  it('stops the log file at its limit and says so, while every line still reaches the tail', async () => {
    const out = collect();
    const s = spec(['sh', '-c', 'for i in $(seq 1 200); do echo "line $i of the output"; done'], {});
    const result = await startCommand(s, out.onLine, 1000).done;
    expect(result.outcome).toBe('SUCCEEDED');
    const log = fs.readFileSync(s.logFile, 'utf8');
    expect(log.startsWith('line 1 of the output\n')).toBe(true);
    expect(log).toContain("\n[hearth-agent: the log stops here, at 1000 bytes; the job's output goes on]\n");
    expect(Buffer.byteLength(log)).toBeLessThan(1100);
    expect(out.lines.map((l) => l.text)).toHaveLength(200);
    expect(out.lines.at(-1)?.text).toBe('line 200 of the output');
  });

  describe('processes that leave the process group', () => {
    it('are still running when the job has no cookie (the case the cookie is for)', async () => {
      const { run, escaped } = escaping(escapeScript(), { cookie: undefined });
      expect(await run.done).toMatchObject({ outcome: 'SUCCEEDED' });
      expect(isAlive(await escaped)).toBe(true);
    });

    it('are stopped before done when the main process exits, and the user is told why', async () => {
      const { s, run, out, escaped } = escaping(escapeScript());
      expect(await run.done).toEqual({ outcome: 'SUCCEEDED', exitCode: 0, signal: null, reason: null });
      expect(isAlive(await escaped)).toBe(false);
      expect(out.lines).toContainEqual({ stream: 'stderr', text: STOPPED_ONE });
      expect(fs.readFileSync(s.logFile, 'utf8')).toContain(`\n${STOPPED_ONE}\n`);
    });

    it.each([
      ['a timeout', 'TIMED_OUT', 1, () => undefined],
      ['a cancel', 'CANCELLED', 30, (run: CommandRun) => run.cancel(1)],
      ['an agent stop', 'RELEASED', 30, (run: CommandRun) => run.kill('agent stopped')],
    ])('are stopped before done on %s (%s)', async (_, outcome, timeoutSeconds, stop) => {
      const { run, out, escaped } = escaping(`${escapeScript()}; sleep 60`, { timeoutSeconds });
      const pid = await escaped;
      expect(isAlive(pid)).toBe(true);
      stop(run);
      expect(await run.done).toMatchObject({ outcome });
      expect(isAlive(pid)).toBe(false);
      expect(out.lines).toContainEqual({ stream: 'stderr', text: STOPPED_ONE });
    });

    it('no longer hold the run for the close grace when they keep the output open', async () => {
      const started = Date.now();
      const { run, escaped } = escaping(escapeScript(true));
      expect(await run.done).toMatchObject({ outcome: 'SUCCEEDED' });
      expect(Date.now() - started).toBeLessThan(3000);
      expect(isAlive(await escaped)).toBe(false);
    });

    it("take the cookie from the env's HEARTH_ATTEMPT_ID when the spec names none", async () => {
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HEARTH_TEST_RUN: RUN_MARK };
      const { run, escaped } = escaping(escapeScript(), {
        cookie: undefined,
        env: { ...env, HEARTH_ATTEMPT_ID: randomUUID() },
      });
      await run.done;
      expect(isAlive(await escaped)).toBe(false);
    });

    it('leave alone the processes of another attempt running at the same time', async () => {
      const other = escaping(`${escapeScript()}; sleep 60`);
      const otherPid = await other.escaped;
      const { run, escaped } = escaping(escapeScript());
      await run.done;
      expect(isAlive(await escaped)).toBe(false);
      expect([other.run.pid!, otherPid].map(isAlive)).toEqual([true, true]);

      other.run.cancel(1);
      await other.run.done;
      expect(isAlive(otherPid)).toBe(false);
    });
  });
});
