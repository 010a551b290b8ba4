/**
 * Command jobs in a sandbox, when the local policy asks for one (`commands.sandbox`). A command job
 * runs as the agent's user; without a sandbox it can read the agent's key, other jobs' working
 * directories and environments (/proc), rewrite the ledger, and leave processes behind. In the
 * sandbox it sees:
 * - the whole file system read-only, with the agent's data dir emptied but for its own working
 *   directory, the agent's TLS keys replaced by empty files, and the policy's hidePaths emptied;
 * - its own /tmp (TMPDIR is its working directory, on disk, removed when it ends);
 * - the data roots read-only and the artifact root writable (a job may save a model there for
 *   registerModelVersion);
 * - its own process and IPC namespaces: no other process is visible, and when its main process
 *   exits every process it started is killed, however it left the process group;
 * - a minimal /dev with only its own GPUs' device files added (gpu-devices.ts), and the host
 *   devices the policy lists (`devices`);
 * - with `network: false`, no network but its own loopback.
 *
 * Why bubblewrap (`bwrap`): Node cannot create namespaces itself, and bubblewrap is the well-kept,
 * unprivileged tool for it (Flatpak's; packaged by every distribution), using user namespaces when
 * the agent is not root. Its launcher is the job's main process here: it exits with the job's
 * exit code, or 128 + the signal that killed it.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { findProgram } from '../policy/command-check.js';
import { PolicyError, type LocalPolicy } from '../policy/local-policy.js';
import type { GpuDeviceFiles } from './gpu-devices.js';

/** A sandbox the policy asks for but this machine cannot give; `run` stops at start with it. */
export class SandboxError extends Error {
  override readonly name = 'SandboxError';
}

export const SANDBOX_TOOL = 'bwrap';

/**
 * Finds bubblewrap on the agent's PATH and tries it once with the mounts every job gets, so that
 * a machine that cannot sandbox (no bubblewrap, user namespaces turned off) is found at start, not
 * by each job. Returns the tool's absolute path.
 */
export function prepareSandbox(policy: LocalPolicy, searchPath: string, dataDir: string): string {
  const where = `("commands.sandbox" in ${policy.file})`;
  let tool: string;
  try {
    tool = findProgram(SANDBOX_TOOL, searchPath);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    throw new SandboxError(
      `the local policy asks for a sandbox for command jobs ${where}, but bubblewrap is not installed ` +
        `(no ${SANDBOX_TOOL} on the agent's PATH): install it (Debian, Ubuntu: apt-get install bubblewrap; ` +
        `RHEL: dnf install bubblewrap), or remove "sandbox"`,
    );
  }
  for (const [list, paths] of [
    ['hidePaths', policy.commands.sandbox?.hidePaths ?? []],
    ['devices', policy.commands.sandbox?.devices ?? []],
  ] as const) {
    for (const p of paths) {
      if (!fs.existsSync(p)) {
        throw new SandboxError(`the sandbox's ${list} names ${p}, which does not exist ${where}`);
      }
    }
  }
  const probe = spawnSync(tool, [...sandboxArgs(policy, { dataDir, workDir: dataDir }), 'true'], {
    encoding: 'utf8',
    timeout: 10_000,
    env: { PATH: searchPath },
  });
  if (probe.status !== 0) {
    const said = (probe.stderr ?? '').trim().split('\n')[0] || probe.error?.message || `exit ${probe.status}`;
    throw new SandboxError(
      `the local policy asks for a sandbox for command jobs ${where}, but ${tool} cannot start one here: ` +
        `${said}. Unprivileged user namespaces may be turned off (sysctl kernel.unprivileged_userns_clone, ` +
        `user.max_user_namespaces; Ubuntu 24.04: kernel.apparmor_restrict_unprivileged_userns), or the agent ` +
        `runs in a container that forbids them`,
    );
  }
  return tool;
}

export interface SandboxedJob {
  dataDir: string;
  /** The job's working directory: the one place under the data dir it sees, writable. */
  workDir: string;
  /** Its GPUs' device files, and the other GPUs' driver entries to hide (gpuDeviceFiles). */
  gpus?: GpuDeviceFiles;
}

/** The policy gives every job the whole host /dev: GPUs are then not isolated by device file. */
export function sandboxSharesHostDevices(policy: LocalPolicy): boolean {
  return policy.commands.sandbox?.devices.includes('/dev') ?? false;
}

/**
 * bwrap's arguments up to (and including) the `--` before the job's command. Later mounts cover
 * earlier ones, so the order is: everything read-only, then what is hidden, then what is given back.
 */
export function sandboxArgs(policy: LocalPolicy, job: SandboxedJob): string[] {
  const sandbox = policy.commands.sandbox;
  if (sandbox === null) throw new Error('sandboxArgs: the policy asks for no sandbox');
  const args = ['--die-with-parent', '--unshare-pid', '--unshare-ipc'];
  if (!sandbox.network) args.push('--unshare-net');
  args.push('--ro-bind', '/', '/', '--dev', '/dev');
  for (const device of sandbox.devices) args.push('--dev-bind', device, device);
  for (const file of job.gpus?.bind ?? []) args.push('--dev-bind', file.from, file.to);
  args.push('--proc', '/proc', '--tmpfs', '/tmp');
  for (const hidden of sandbox.hidePaths) args.push('--tmpfs', hidden);
  args.push('--tmpfs', job.dataDir);
  for (const keyFile of [policy.serve.tls?.keyFile, policy.metrics.tls?.keyFile]) {
    if (keyFile && fs.existsSync(keyFile)) args.push('--ro-bind', '/dev/null', keyFile);
  }
  for (const root of policy.dataRoots) if (fs.existsSync(root)) args.push('--ro-bind', root, root);
  if (policy.artifactRoot !== null && fs.existsSync(policy.artifactRoot)) {
    args.push('--bind', policy.artifactRoot, policy.artifactRoot);
  }
  // Last, so that nothing bound above shows them again.
  for (const entry of job.gpus?.hide ?? []) args.push('--tmpfs', entry);
  args.push('--bind', job.workDir, job.workDir, '--chdir', job.workDir, '--');
  return args;
}

/** bwrap reports a job killed by a signal as 128 + its number: the signal's name, or null. */
export function signalOfSandboxExit(code: number | null): NodeJS.Signals | null {
  if (code === null || code <= 128) return null;
  const found = Object.entries(os.constants.signals).find(([, n]) => n === code - 128);
  return found ? (found[0] as NodeJS.Signals) : null;
}
