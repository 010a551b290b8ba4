/**
 * `npm run demo`: the whole product on one machine with nothing but Node (and a nats-server binary).
 * Postgres comes from PGlite over a local socket when DATABASE_URL is unset; NATS from a nats-server
 * started here, with JWT auth on, when NATS_URL is unset. Then: migrate, start the control plane,
 * create a demo organization, enroll one agent, run a sample job, and print how to reach the API.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataSource } from 'typeorm';
import { loadConfig } from '../config/config.js';
import { OrgsService } from '../modules/orgs/orgs.service.js';
import { AuditService } from '../platform/audit/audit.service.js';
import { migrate } from '../platform/database/data-source.js';
import { generateNatsOperatorSecrets, NatsAuthority } from '../platform/messaging/nats-auth.js';
import { startNatsServer } from '../platform/messaging/nats-server.js';
import { Transactions } from '../platform/tenancy/transactions.js';
import { startServer } from '../server.js';
import { startEmbeddedPostgres } from './embedded-postgres.js';

const AGENT_BIN = fileURLToPath(new URL('../../../agent/bin/hearth-agent.js', import.meta.url));
const SAMPLE = ['node', '-e', "console.log('hello from a Hearth agent on', require('os').hostname())"];

export async function runDemo(opts: { once: boolean }): Promise<number> {
  const base = loadConfig();
  const home = resolve(base.home);
  const state = join(home, 'demo');
  rmSync(state, { recursive: true, force: true }); // each demo starts clean
  mkdirSync(state, { recursive: true, mode: 0o700 });
  const stops: (() => Promise<void> | void)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop();
  };

  try {
    const overrides: Record<string, string> = {};
    if (!base.database.url) {
      const pg = await startEmbeddedPostgres(join(state, 'pglite'));
      stops.push(() => pg.stop());
      overrides.DATABASE_URL = pg.url;
      // PGlite is a single Postgres session behind the socket: connections would interleave their
      // statements in it (an unnamed prepared statement of one replaced by another's). One connection.
      overrides.DATABASE_POOL_SIZE = '1';
      say(`Postgres: embedded PGlite at ${pg.url}`);
    }
    if (!base.nats.url) {
      const secrets = generateNatsOperatorSecrets();
      const nats = await startNatsServer({
        port: 0,
        host: '127.0.0.1',
        dir: join(state, 'nats'),
        auth: new NatsAuthority(secrets),
      });
      stops.push(() => nats.stop());
      Object.assign(overrides, {
        NATS_URL: nats.url,
        NATS_OPERATOR_SEED: secrets.operatorSeed,
        NATS_ACCOUNT_SEED: secrets.accountSeed,
        NATS_SYSTEM_ACCOUNT_SEED: secrets.systemAccountSeed,
      });
      say(`NATS: nats-server at ${nats.url} (JWT auth on: each agent can reach only its own subjects)`);
    }
    const config = loadConfig(overrides);
    await migrate(config.database.migrationUrl!);

    const { app, url } = await startServer(config);
    stops.push(() => app.close());
    const graphqlUrl = `${url}/graphql`;
    const tx = new Transactions(app.get(DataSource));
    const created = await new OrgsService(tx, new AuditService(tx)).create('Demo', 'admin@demo.hearth.local');
    const gql = graphqlClient(graphqlUrl, created.adminToken);

    const { createJoinToken } = await gql<{ createJoinToken: { token: string } }>(
      `mutation { createJoinToken(ttlSeconds: 600) { token } }`,
    );
    const agentDir = join(state, 'agent');
    await run(process.execPath, [
      AGENT_BIN,
      'join',
      '--url',
      url,
      '--token',
      createJoinToken.token,
      '--data-dir',
      agentDir,
      '--label',
      'demo=true',
    ]);
    const agent = spawn(process.execPath, [AGENT_BIN, 'run', '--data-dir', agentDir], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    stops.push(() => stopChild(agent));
    await waitFor(
      async () => {
        const { agents } = await gql<{ agents: { state: string }[] }>(`{ agents { state } }`);
        return agents.some((a) => a.state === 'ONLINE');
      },
      30_000,
      'the agent did not come online',
    );
    say('agent joined and online');

    const { submitJob } = await gql<{ submitJob: { id: string } }>(
      `mutation($command: [String!]!) { submitJob(input: { kind: COMMAND, command: $command, timeoutSeconds: 60 }) { id } }`,
      { command: SAMPLE },
    );
    let job: { state: string; exitCode: number | null; logTail: string } | null = null;
    await waitFor(
      async () => {
        ({ job } = await gql<{ job: { state: string; exitCode: number | null; logTail: string } }>(
          `query($id: ID!) { job(id: $id) { state exitCode logTail } }`,
          { id: submitJob.id },
        ));
        return ['SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'].includes(job!.state);
      },
      60_000,
      'the sample job did not finish',
    );
    const finished = job!;
    say(
      `sample job ${submitJob.id}: ${finished.state} (exit ${finished.exitCode}) ${finished.logTail.trim()}`,
    );

    mkdirSync(home, { recursive: true });
    writeFileSync(
      join(home, 'demo.json'),
      JSON.stringify(
        { graphqlUrl, adminToken: created.adminToken, organizationId: created.organizationId },
        null,
        2,
      ),
      { mode: 0o600 },
    );
    say(`GraphQL: ${graphqlUrl}`);
    say(`admin token: ${created.adminToken}`);
    say(`(also in ${join(home, 'demo.json')})`);
    const ok = finished.state === 'SUCCEEDED';
    if (opts.once) {
      await stopAll();
      return ok ? 0 : 1;
    }
    say('running; Ctrl-C to stop');
    await new Promise<void>((done) => {
      process.once('SIGINT', done);
      process.once('SIGTERM', done);
    });
    await stopAll();
    return 0;
  } catch (err) {
    console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
    await stopAll().catch(() => undefined);
    return 1;
  }
}

function say(line: string) {
  console.log(`[demo] ${line}`);
}

function graphqlClient(url: string, token: string) {
  return async <T>(query: string, variables?: Record<string, unknown>): Promise<T> => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await res.json()) as { data?: T; errors?: { message: string }[] };
    if (body.errors?.length) throw new Error(body.errors.map((e) => e.message).join('; '));
    return body.data!;
  };
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(what);
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', fail);
    child.on('exit', (code) => (code === 0 ? done() : fail(new Error(`${args[1]} exited with ${code}`))));
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(kill);
      done();
    });
    child.kill('SIGTERM');
  });
}
