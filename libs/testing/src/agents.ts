import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentAddress } from '@hearth/contracts';
import { createOrganization, type ControlPlane } from './control-plane.js';
import { GraphQLClient } from './graphql.js';
import { AGENT_BIN } from './paths.js';
import { Proc, runProcess, startProcess } from './processes.js';

export interface TestAgent {
  id: string;
  dataDir: string;
  proc: Proc;
}

/** Enrolls a real agent with `hearth-agent join`; returns its id and data dir. */
export async function joinAgent(
  controlPlaneUrl: string,
  token: string,
  opts: { labels?: Record<string, string>; dataDir?: string } = {},
) {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'hearth-agent-'));
  const labels = Object.entries(opts.labels ?? {}).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
  const r = await runProcess(process.execPath, [
    AGENT_BIN,
    'join',
    '--url',
    controlPlaneUrl,
    '--token',
    token,
    '--data-dir',
    dataDir,
    ...labels,
  ]);
  return { ...r, dataDir, id: r.stdout.match(/joined as agent (\S+)/)?.[1] };
}

/** Starts `hearth-agent run` on an enrolled data dir (env: added to the test's own, e.g. a PATH). */
export function runAgent(
  dataDir: string,
  args: string[] = [],
  env: Record<string, string | undefined> = {},
  nodeArgs: string[] = [],
): Proc {
  return startProcess(
    process.execPath,
    [...nodeArgs, AGENT_BIN, 'run', '--data-dir', dataDir, ...args],
    { HEARTH_AGENT_LOG_LEVEL: 'info', ...env },
    'agent',
  );
}

/** Join + run in one step; throws if join fails. */
export async function startAgent(
  controlPlaneUrl: string,
  token: string,
  opts: {
    labels?: Record<string, string>;
    args?: string[];
    env?: Record<string, string | undefined>;
    /** For node itself (benchmarks pass `--cpu-prof`). */
    nodeArgs?: string[];
  } = {},
): Promise<TestAgent> {
  const joined = await joinAgent(controlPlaneUrl, token, opts);
  if (joined.code !== 0 || !joined.id)
    throw new Error(`hearth-agent join failed (${joined.code}): ${joined.stderr}${joined.stdout}`);
  return {
    id: joined.id,
    dataDir: joined.dataDir,
    proc: runAgent(joined.dataDir, opts.args, opts.env, opts.nodeArgs),
  };
}

/**
 * A new organization with one agent enrolled through the real join (`hearth-agent join`), for a test
 * that then acts as that agent over raw NATS: its admin's API client and token, and the agent's address.
 */
export async function enrollAgent(
  cp: Pick<ControlPlane, 'url' | 'graphqlUrl'>,
  databaseUrl: string,
  organization: string,
) {
  const org = await createOrganization(databaseUrl, organization);
  const client = new GraphQLClient(cp.graphqlUrl, org.adminToken);
  const { createJoinToken } = await client.ok<{ createJoinToken: { token: string } }>(
    `mutation { createJoinToken { token } }`,
  );
  const joined = await joinAgent(cp.url, createJoinToken.token);
  if (!joined.id) throw new Error(`join failed: ${joined.stderr}`);
  const address: AgentAddress = { tenantId: org.organizationId, agentId: joined.id };
  return { client, token: org.adminToken, address };
}
