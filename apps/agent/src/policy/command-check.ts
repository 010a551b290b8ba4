/**
 * A command job against the local policy's `commands` block, before it is claimed: command jobs
 * allowed at all; every environment variable the job sets allowed; the program found by the agent
 * itself, on the agent's own PATH (never the job's, which would choose it), and, where the policy
 * lists programs, one of them (with its required first arguments). The program is then started by
 * the absolute path checked here.
 *
 * A listed program matches as written or once symbolic links are resolved: `/opt/venv/bin/python`
 * is usually a link to the system's interpreter. That is sound only while the listed paths are out
 * of the agent user's write access, which the README asks of IT, as for the policy file itself.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  isInside,
  PolicyError,
  realpathOrNull,
  type ExecutableRule,
  type LocalPolicy,
} from './local-policy.js';

export interface CheckedCommand {
  /** The absolute path to start: `command[0]` as the agent resolved it. */
  readonly executable: string;
}

export function checkCommand(
  command: readonly string[],
  env: Readonly<Record<string, string>>,
  policy: LocalPolicy,
  searchPath: string,
): CheckedCommand {
  const { commands, file } = policy;
  if (!commands.enabled) {
    throw new PolicyError(
      `this agent's local policy does not allow command jobs ("commands.enabled": false in ${file}); ` +
        'it runs train, batch_predict and serve jobs only',
    );
  }
  for (const key of Object.keys(env)) {
    if (commands.envAllow !== null && !commands.envAllow.some((p) => matches(p, key))) {
      throw new PolicyError(
        `the job sets the environment variable ${key}, which is not among those this agent's local policy ` +
          `lets command jobs set ("commands.envAllow" in ${file})`,
      );
    }
    if (commands.envDeny.some((p) => matches(p, key))) {
      throw new PolicyError(
        `the job sets the environment variable ${key}, which this agent's local policy does not let command ` +
          `jobs set ("commands.envDeny" in ${file})`,
      );
    }
  }
  const executable = findProgram(command[0], searchPath);
  if (commands.executables !== null && !allowed(executable, command.slice(1), commands.executables)) {
    throw new PolicyError(
      `the program ${executable} (with these arguments) is not among those this agent's local policy lets ` +
        `command jobs run ("commands.executables" in ${file})`,
    );
  }
  return { executable };
}

/** A pattern is a variable name, or a prefix ending in `*`. */
function matches(pattern: string, key: string): boolean {
  return pattern.endsWith('*') ? key.startsWith(pattern.slice(0, -1)) : key === pattern;
}

/** What `execvp` would start, decided here so that the job's env has no say in it. */
export function findProgram(name: string, searchPath: string): string {
  if (name.includes('/')) {
    // A relative path would be resolved in the job's fresh, empty working directory; `..` and
    // `//` would make the check's reading of the path differ from the kernel's.
    if (!path.isAbsolute(name) || path.normalize(name) !== name) {
      throw new PolicyError(
        `the command ${name} must be a program name found on this agent's PATH, or a normalized absolute path`,
      );
    }
    const problem = notExecutable(name);
    if (problem) throw new PolicyError(`the program ${name} ${problem} on this agent`);
    return name;
  }
  for (const dir of searchPath.split(':')) {
    if (!path.isAbsolute(dir)) continue; // "" and relative entries would mean the working directory
    const candidate = path.join(dir, name);
    if (notExecutable(candidate) === null) return candidate;
  }
  throw new PolicyError(`the program ${name} is not found on this agent's PATH`);
}

function notExecutable(file: string): string | null {
  try {
    if (!fs.statSync(file).isFile()) return 'is not a file';
    fs.accessSync(file, fs.constants.X_OK);
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'does not exist';
    return code === 'EACCES' ? 'is not executable' : `cannot be checked (${code ?? 'error'})`;
  }
}

function allowed(executable: string, args: readonly string[], rules: readonly ExecutableRule[]): boolean {
  const real = realpathOrNull(executable);
  return rules.some((rule) => {
    if (!rule.argsPrefix.every((arg, i) => args[i] === arg)) return false;
    if (rule.path.endsWith('/')) {
      const dir = rule.path.slice(0, -1) || '/';
      const realDir = realpathOrNull(dir);
      return isInside(executable, dir) || (real !== null && realDir !== null && isInside(real, realDir));
    }
    return executable === rule.path || (real !== null && real === realpathOrNull(rule.path));
  });
}
