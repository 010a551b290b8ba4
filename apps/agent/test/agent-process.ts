/** Starts the real `hearth-agent run` process (from dist) and keeps its stderr for assertions. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runProcess } from '@hearth/testing';
import { waitUntil, type FakeControlPlane } from './fake-control-plane.js';

export const agentDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const repoRoot = path.resolve(agentDir, '../..');

/** The lead's test script builds first (npm run build); this only covers a missing dist. */
export function ensureBuilt(): void {
  if (!fs.existsSync(path.join(agentDir, 'dist', 'cli.js'))) {
    execFileSync('npx', ['tsc', '-b', 'apps/agent'], { cwd: repoRoot, stdio: 'inherit' });
  }
}

/** Whether a process (a job's, a serve worker) still exists. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The agent's metrics endpoint, from the line its log gives when it listens (`--metrics-port 0`). */
export function metricsUrl(log: string): string {
  const line = log.split('\n').find((l) => l.includes('metrics endpoint listening'));
  if (!line) throw new Error(`no metrics endpoint in the agent's log:\n${log}`);
  return (JSON.parse(line) as { url: string }).url;
}

/** One test file's agent directories, under a fresh temporary directory (`tmp`, links resolved). */
export interface AgentHome {
  readonly tmp: string;
  /** Joined to the fake control plane; the local policy goes in it as policy.json. */
  readonly dataDir: string;
  /** Created empty. */
  readonly artifactRoot: string;
}

/** Makes an AgentHome joined to `cp` and writes `policy` (given the home) as its local policy. */
export function makeAgentHome(
  cp: FakeControlPlane,
  prefix: string,
  policy: (home: AgentHome) => unknown,
): AgentHome {
  const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
  const home = { tmp, dataDir: path.join(tmp, 'data-dir'), artifactRoot: path.join(tmp, 'artifacts') };
  fs.mkdirSync(home.artifactRoot);
  cp.writeDataDir(home.dataDir);
  fs.writeFileSync(path.join(home.dataDir, 'policy.json'), JSON.stringify(policy(home)));
  return home;
}

/** Runs `hearth-agent <args>` to its exit (one that should stop at start); its code and output. */
export function runAgentToExit(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  ensureBuilt();
  return runProcess(process.execPath, [path.join(agentDir, 'bin', 'hearth-agent.js'), ...args]);
}

export interface AgentProcess {
  proc: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
  stop: () => void;
}

export async function startAgent(
  dataDir: string,
  cwd: string,
  extraArgs: string[] = [],
  env: Record<string, string | undefined> = {},
): Promise<AgentProcess> {
  ensureBuilt();
  const proc = spawn(
    process.execPath,
    [path.join(agentDir, 'bin', 'hearth-agent.js'), 'run', '--data-dir', dataDir, ...extraArgs],
    { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } },
  );
  let log = '';
  proc.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const agent = {
    proc,
    log: () => log,
    exited,
    stop: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      if (process.env.HEARTH_TEST_AGENT_LOG) process.stderr.write(log); // the agent's own log, when debugging
    },
  };
  await waitUntil(() => log.includes('agent ready'), 20_000, `the agent to be ready; its log:\n${log}`);
  return agent;
}
