import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkCommand } from './command-check.js';
import { parseLocalPolicy, PolicyError, type LocalPolicy } from './local-policy.js';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-command-check-')));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** An executable script at `file` (its directories made). */
function program(file: string, mode = 0o755): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, '#!/bin/sh\nexit 0\n', { mode });
  return file;
}

// The agent's PATH: two directories; `tool` is in both, the first one wins.
const agentBin = path.join(tmp, 'agent-bin');
const otherBin = path.join(tmp, 'other-bin');
const tool = program(path.join(agentBin, 'tool'));
program(path.join(otherBin, 'tool'));
program(path.join(otherBin, 'only-here'));
fs.mkdirSync(path.join(agentBin, 'a-directory'));
program(path.join(agentBin, 'not-executable'), 0o644);
const searchPath = `${agentBin}::relative-dir:${otherBin}`;

// A virtualenv-like layout: the listed `python` is a link to the interpreter elsewhere.
const interpreter = program(path.join(tmp, 'usr', 'bin', 'python3.11'));
const venvPython = path.join(tmp, 'venv', 'bin', 'python');
fs.mkdirSync(path.dirname(venvPython), { recursive: true });
fs.symlinkSync(interpreter, venvPython);
const mlTools = path.join(tmp, 'ml-tools');
const trainer = program(path.join(mlTools, 'train'));

const policy = (commands: object): LocalPolicy => parseLocalPolicy({ commands }, 'policy.json');
const open = policy({});

function refusal(command: string[], env: Record<string, string>, p: LocalPolicy): string {
  try {
    checkCommand(command, env, p, searchPath);
  } catch (err) {
    if (err instanceof PolicyError) return err.message;
    throw err;
  }
  throw new Error(`expected ${command.join(' ')} to be refused`);
}

describe('checkCommand: the program', () => {
  it("is found on the agent's PATH, never the job's, and started by its absolute path", () => {
    expect(checkCommand(['tool', '--flag'], {}, open, searchPath)).toEqual({ executable: tool });
    expect(checkCommand(['only-here'], {}, open, searchPath).executable).toBe(
      path.join(otherBin, 'only-here'),
    );
    expect(checkCommand([tool], {}, open, searchPath).executable).toBe(tool);
    // A PATH the job sets is refused by default (envDeny), and would not be searched anyway.
    expect(refusal(['tool'], { PATH: '/tmp/evil' }, open)).toBe(
      `the job sets the environment variable PATH, which this agent's local policy does not let command ` +
        `jobs set ("commands.envDeny" in policy.json)`,
    );
  });

  it('is refused with the reason when it cannot be found or started', () => {
    expect(refusal(['hearth-no-such-program'], {}, open)).toBe(
      "the program hearth-no-such-program is not found on this agent's PATH",
    );
    // Not files, not executable, or only in the relative PATH entry: passed over, as execvp would.
    expect(refusal(['a-directory'], {}, open)).toMatch(/is not found on this agent's PATH/);
    expect(refusal(['not-executable'], {}, open)).toMatch(/is not found on this agent's PATH/);
    expect(refusal([path.join(agentBin, 'not-executable')], {}, open)).toBe(
      `the program ${path.join(agentBin, 'not-executable')} is not executable on this agent`,
    );
    expect(refusal([path.join(tmp, 'nope')], {}, open)).toBe(
      `the program ${path.join(tmp, 'nope')} does not exist on this agent`,
    );
    expect(refusal([path.join(agentBin, 'a-directory')], {}, open)).toMatch(/is not a file on this agent$/);
    for (const bad of ['./tool', 'bin/tool', `${agentBin}/../agent-bin/tool`, `${agentBin}//tool`]) {
      expect(refusal([bad], {}, open)).toBe(
        `the command ${bad} must be a program name found on this agent's PATH, or a normalized absolute path`,
      );
    }
  });

  it('must be one the policy lists, when it lists any: a file, a directory, or a file with its first arguments', () => {
    const listed = policy({
      executables: [
        venvPython,
        `${mlTools}/`,
        { path: interpreter, argsPrefix: ['/opt/jobs/score.py'] },
        { path: tool, argsPrefix: ['run', '--safe'] },
      ],
    });
    const ok = (command: string[]) => checkCommand(command, {}, listed, searchPath).executable;
    expect(ok([venvPython, '-c', 'print(1)'])).toBe(venvPython);
    expect(ok([trainer, '--epochs', '3'])).toBe(trainer);
    expect(ok(['tool', 'run', '--safe', 'more'])).toBe(tool);
    // The interpreter the venv links to is listed as such (it is the same file), and on its own
    // only with the script it may run.
    expect(ok([interpreter, '-c', 'x'])).toBe(interpreter);
    const notListed = (command: string[], program = command[0]) =>
      expect(refusal(command, {}, listed)).toBe(
        `the program ${program} (with these arguments) is not among those this agent's local policy lets ` +
          `command jobs run ("commands.executables" in policy.json)`,
      );
    notListed(['tool', 'run'], tool);
    notListed(['tool', '--safe', 'run'], tool);
    notListed(['only-here'], path.join(otherBin, 'only-here'));
    // A link in a listed directory counts for where it is; one elsewhere to a listed file, for what it is.
    const linkToTrainer = path.join(tmp, 'elsewhere', 'train');
    fs.mkdirSync(path.dirname(linkToTrainer));
    fs.symlinkSync(trainer, linkToTrainer);
    expect(ok([linkToTrainer])).toBe(linkToTrainer);
    const linkInList = path.join(mlTools, 'sh');
    fs.symlinkSync('/bin/sh', linkInList);
    expect(ok([linkInList])).toBe(linkInList);
  });
});

describe('checkCommand: the environment', () => {
  it('refuses by default what makes a program load other code, the GPU variables and HEARTH_*', () => {
    for (const key of [
      'LD_PRELOAD',
      'LD_LIBRARY_PATH',
      'NODE_OPTIONS',
      'BASH_ENV',
      'PYTHONSTARTUP',
      'CUDA_VISIBLE_DEVICES',
      'NVIDIA_VISIBLE_DEVICES',
      'HEARTH_ATTEMPT_ID',
    ]) {
      expect(refusal(['tool'], { [key]: 'x' }, open)).toMatch(
        new RegExp(`^the job sets the environment variable ${key}, which this agent's local policy does not`),
      );
    }
    // What jobs commonly set passes; values never appear in a reason.
    expect(
      checkCommand(
        ['tool'],
        { MLFLOW_TRACKING_URI: 'http://x', PYTHONPATH: '/w', HOME: '/h' },
        open,
        searchPath,
      ),
    ).toEqual({ executable: tool });
    expect(refusal(['tool'], { LD_PRELOAD: 'secret-value.so' }, open)).not.toContain('secret-value');
  });

  it('follows the policy: an allow list, and a deny list that replaces the default', () => {
    const allowList = policy({ envAllow: ['MLFLOW_*', 'SEED'] });
    expect(checkCommand(['tool'], { MLFLOW_RUN: '1', SEED: '7' }, allowList, searchPath).executable).toBe(
      tool,
    );
    expect(refusal(['tool'], { SEEDS: '7' }, allowList)).toBe(
      `the job sets the environment variable SEEDS, which is not among those this agent's local policy lets ` +
        `command jobs set ("commands.envAllow" in policy.json)`,
    );
    // Allowed and denied: denied.
    expect(refusal(['tool'], { MLFLOW_X: '1' }, policy({ envAllow: ['*'], envDeny: ['MLFLOW_X'] }))).toMatch(
      /MLFLOW_X, which this agent's local policy does not/,
    );
    // The customer's own deny list replaces the default one.
    const own = policy({ envDeny: ['AWS_*'] });
    expect(checkCommand(['tool'], { LD_LIBRARY_PATH: '/opt/cuda/lib' }, own, searchPath).executable).toBe(
      tool,
    );
    expect(refusal(['tool'], { AWS_SECRET_ACCESS_KEY: 'k' }, own)).toMatch(/AWS_SECRET_ACCESS_KEY/);
  });
});

describe('the commands block of the local policy', () => {
  it('has safe defaults, and refuses what it cannot mean', () => {
    expect(open.commands).toEqual({
      enabled: true,
      executables: null,
      envAllow: null,
      envDeny: expect.arrayContaining(['LD_*', 'PATH', 'NODE_OPTIONS', 'HEARTH_*']),
      sendLogTail: true,
      sandbox: null,
    });
    expect(Object.isFrozen(open.commands)).toBe(true);
    expect(
      policy({ executables: ['/opt/ml/../ml/bin/', { path: '/usr/bin/python3' }] }).commands.executables,
    ).toEqual([
      { path: '/opt/ml/bin/', argsPrefix: [] },
      { path: '/usr/bin/python3', argsPrefix: [] },
    ]);
    const invalid = (commands: object) => () => policy(commands);
    expect(invalid({ executables: ['python3'] })).toThrow(
      'the local policy policy.json is invalid at commands.executables.0: must be an absolute path',
    );
    expect(invalid({ envDeny: ['LD_*_X'] })).toThrow(
      'invalid at commands.envDeny.0: must be a variable name, or a prefix ending in *',
    );
    expect(invalid({ sendLogTail: 'no' })).toThrow(/invalid at commands.sendLogTail/);
    expect(invalid({ shell: true })).toThrow(/invalid at commands/);
    expect(() =>
      parseLocalPolicy({ commandJobs: true, commands: { enabled: false } }, 'policy.json'),
    ).toThrow(
      'the local policy policy.json sets both "commandJobs" and "commands.enabled", differently: keep "commands.enabled"',
    );
    expect(parseLocalPolicy({ commandJobs: false, commands: { enabled: false } }, 'p').commands.enabled).toBe(
      false,
    );
  });
});
