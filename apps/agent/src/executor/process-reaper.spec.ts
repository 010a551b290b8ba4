import { afterAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { isAlive, livingProcesses } from '@hearth/testing';
import { reapEscaped } from './process-reaper.js';

const KEY = 'HEARTH_ATTEMPT_ID';
/** Every process this file starts carries it, so afterAll can stop them whatever a test left. */
const MARK = `HEARTH_TEST_RUN=${randomUUID()}`;
const PATH = process.env.PATH ?? '/usr/bin:/bin';

afterAll(() => {
  for (const pid of carriers(MARK)) process.kill(pid, 'SIGKILL');
});

/** Living (not zombie) processes whose environment has this exact entry. */
const carriers = (entry: string) => livingProcesses((p) => p.environ.includes(entry));

/** Starts a command with this environment (and the file's mark); spawn returns once it has exec'd. */
function start(env: Record<string, string>, command = ['sleep', '300'], detached = false): number {
  const [markKey, markValue] = MARK.split('=');
  const child = spawn(command[0], command.slice(1), {
    env: { PATH, ...env, [markKey]: markValue },
    stdio: 'ignore',
    detached,
  });
  child.on('error', () => undefined);
  return child.pid!;
}

describe('reapEscaped', () => {
  it('kills the processes whose environment holds the whole entry, and only those', async () => {
    const id = `t-${randomUUID()}`;
    const target = start({ A: '1', [KEY]: id, Z: '2' });
    const longerValue = start({ [KEY]: `${id}d` });
    const longerKey = start({ [`X${KEY}`]: id });
    const inAnotherValue = start({ OTHER: `${KEY}=${id}` });

    const result = await reapEscaped({ key: KEY, value: id });

    expect(result).toEqual({ supported: true, killed: 1, survivors: 0 });
    expect(isAlive(target)).toBe(false);
    expect([longerValue, longerKey, inAnotherValue].map(isAlive)).toEqual([true, true, true]);
  });

  it('leaves the processes of the group it is told to skip', async () => {
    const id = `t-${randomUUID()}`;
    const leader = start({ [KEY]: id }, ['sleep', '300'], true);

    expect(await reapEscaped({ key: KEY, value: id }, { skipGroup: leader })).toEqual({
      supported: true,
      killed: 0,
      survivors: 0,
    });
    expect(isAlive(leader)).toBe(true);
  });

  it('keeps killing a process tree that forks while it is reaped, until none is left', async () => {
    const id = `t-${randomUUID()}`;
    const forker = start({ [KEY]: id }, ['sh', '-c', 'while :; do sleep 300 & sleep 0.01; done']);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(carriers(`${KEY}=${id}`).length).toBeGreaterThan(5);

    const result = await reapEscaped({ key: KEY, value: id });

    expect(result.survivors).toBe(0);
    expect(result.killed).toBeGreaterThan(5);
    expect(isAlive(forker)).toBe(false);
    expect(carriers(`${KEY}=${id}`)).toEqual([]);
  });

  it('says so, and kills nothing, where there is no process table to read', async () => {
    const id = `t-${randomUUID()}`;
    const bystander = start({ [KEY]: id });
    expect(await reapEscaped({ key: KEY, value: id }, { procRoot: '/nonexistent-proc' })).toEqual({
      supported: false,
      killed: 0,
      survivors: 0,
    });
    expect(isAlive(bystander)).toBe(true);
  });
});
