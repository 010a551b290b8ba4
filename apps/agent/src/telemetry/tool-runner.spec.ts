import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isAlive } from '@hearth/testing';
import { createToolRunner } from './tool-runner.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-tools-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

let n = 0;
/** A directory holding fake tools (shell scripts), to put first on PATH. */
function bin(tools: Record<string, string>): string {
  const dir = path.join(root, `bin-${n++}`);
  fs.mkdirSync(dir);
  for (const [name, body] of Object.entries(tools)) {
    fs.writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  }
  return dir;
}
const env = (dir: string) => ({ PATH: `${dir}:/usr/bin:/bin` });

async function eventually(check: () => boolean, limitMs = 10_000): Promise<boolean> {
  for (const end = Date.now() + limitMs; Date.now() < end;) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return check();
}

describe('tool runner', () => {
  it('returns what the tool prints, found on PATH', async () => {
    const dir = bin({
      'nvidia-smi': `[ "$1" = "--query-gpu=index" ] || exit 2\ncat '${fixture('nvidia-8xh100.csv')}'`,
    });
    const run = createToolRunner({ env: env(dir) });
    const result = await run('nvidia-smi', ['--query-gpu=index']);
    expect(result).toEqual({ status: 'ok', stdout: fs.readFileSync(fixture('nvidia-8xh100.csv'), 'utf8') });
  });

  it('reports a tool that is not installed as missing, not as a failure', async () => {
    const run = createToolRunner({ env: env(bin({})) });
    expect(await run('rocm-smi', ['--json'])).toEqual({ status: 'missing' });
  });

  it('does not look for a missing tool again until the recheck interval has passed', async () => {
    const dir = bin({});
    const run = createToolRunner({ env: env(dir), missingRecheckMs: 300 });
    expect(await run('nvidia-smi', ['-L'])).toEqual({ status: 'missing' });
    // The driver is installed: the next samples still skip it (no fork), then it is found.
    fs.writeFileSync(path.join(dir, 'nvidia-smi'), '#!/bin/sh\necho "GPU 0: NVIDIA H100"\n', { mode: 0o755 });
    expect(await run('nvidia-smi', ['-L'])).toEqual({ status: 'missing' });
    expect(await run('nvidia-smi', ['--query-gpu=index'])).toEqual({ status: 'missing' });
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(await run('nvidia-smi', ['-L'])).toEqual({ status: 'ok', stdout: 'GPU 0: NVIDIA H100\n' });
    // A tool that is there is run every time.
    fs.rmSync(path.join(dir, 'nvidia-smi'));
    expect(await run('nvidia-smi', ['-L'])).toEqual({ status: 'missing' });
  });

  it('kills a tool that hangs, with everything it started, and answers at the timeout', async () => {
    const pids = path.join(root, 'hung.pids');
    const dir = bin({ 'nvidia-smi': `sleep 1000 &\necho "$$ $!" > '${pids}'\nwait` });
    const run = createToolRunner({ env: env(dir), timeoutMs: 1000 });
    expect(await run('nvidia-smi', [])).toEqual({ status: 'timeout', timeoutMs: 1000 });
    const started = fs.readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    expect(started).toHaveLength(2);
    expect(await eventually(() => started.every((pid) => !isAlive(pid)))).toBe(true);
  });

  it('does not start a command again while its previous run is still going', async () => {
    const dir = bin({ 'rocm-smi': 'sleep 1000' });
    const run = createToolRunner({ env: env(dir), timeoutMs: 500 });
    const first = run('rocm-smi', ['--json']);
    expect(await run('rocm-smi', ['--json'])).toEqual({ status: 'stuck' });
    expect(await first).toEqual({ status: 'timeout', timeoutMs: 500 });
  });

  it('reports a tool that fails with its exit code and first line', async () => {
    const dir = bin({
      'nvidia-smi':
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9',
    });
    const result = await createToolRunner({ env: env(dir) })('nvidia-smi', []);
    expect(result).toEqual({
      status: 'failed',
      reason:
        "nvidia-smi exited with code 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    });
  });

  it('stops a tool that prints without end', async () => {
    const dir = bin({ 'rocm-smi': 'exec yes' });
    const result = await createToolRunner({ env: env(dir), maxOutputBytes: 10_000 })('rocm-smi', []);
    expect(result).toEqual({ status: 'failed', reason: 'rocm-smi: more than 10000 bytes of output' });
  });
});
