import { HEARTH_BIN } from './paths.js';
import { Proc, runProcess, startProcess } from './processes.js';

export interface ControlPlane {
  url: string;
  graphqlUrl: string;
  proc: Proc;
  stop(): Promise<void>;
}

/**
 * Starts the real control plane (`hearth serve`) on a free port and waits until it listens. `nodeArgs`
 * go to node itself (benchmarks pass `--cpu-prof`, which NODE_OPTIONS does not allow).
 */
export async function startControlPlane(
  env: Record<string, string | undefined>,
  opts: { nodeArgs?: string[] } = {},
): Promise<ControlPlane> {
  const proc = startProcess(
    process.execPath,
    [...(opts.nodeArgs ?? []), HEARTH_BIN, 'serve'],
    {
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      ...env,
    },
    'control-plane',
  );
  const line = await proc
    .waitForLine((l) => l.includes('"control plane listening"'), 30_000)
    .catch((err: unknown) => {
      proc.kill9(); // never leave a half-started control plane consuming from the shared NATS
      throw err;
    });
  const url = (JSON.parse(line) as { url: string }).url;
  return {
    url,
    graphqlUrl: `${url}/graphql`,
    proc,
    async stop() {
      await proc.stop();
    },
  };
}

/** Creates an organization with the real CLI; returns its id and the admin's API token. */
export async function createOrganization(
  databaseUrl: string,
  name: string,
  email = `admin@${name.toLowerCase().replace(/[^a-z0-9]/g, '')}.test`,
): Promise<{ organizationId: string; adminToken: string }> {
  const r = await runProcess(
    process.execPath,
    [HEARTH_BIN, 'org', 'create', '--name', name, '--admin-email', email, '--json'],
    {
      DATABASE_URL: databaseUrl,
    },
  );
  if (r.code !== 0) throw new Error(`hearth org create failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as { organizationId: string; adminToken: string };
}
