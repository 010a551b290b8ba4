// bench/dispatch: submit → RUNNING latency and throughput with several real agents.
//   npm run build && node bench/dispatch/run.js [--rate 200] [--seconds 10] [--agents 4] [--cpu-prof DIR]
// Uses the local Postgres and nats-server (as the tests do), a real control plane and real agents.
// Latency is measured by Postgres's clock: jobs.started_at (claim committed) - jobs.created_at.
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import {
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  query,
  startAgent,
  startControlPlane,
  waitFor,
} from '@hearth/testing';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '10' },
    agents: { type: 'string', default: '4' },
    // Writes a V8 CPU profile of the control plane into this folder (open it in Chrome DevTools).
    'cpu-prof': { type: 'string' },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const agentCount = Number(values.agents);

const db = await createTestDatabase();
const cp = await startControlPlane(
  {
    DATABASE_URL: db.appUrl,
    NATS_URL: 'nats://127.0.0.1:4222',
    DATABASE_POOL_SIZE: '20',
  },
  { nodeArgs: values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`] : [] },
);
const agents = [];
let keepAlive;
try {
  const org = await createOrganization(db.appUrl, 'Bench');
  const api = new GraphQLClient(cp.graphqlUrl, org.adminToken);
  for (let i = 0; i < agentCount; i++) {
    const { createJoinToken } = await api.ok(`mutation { createJoinToken { token } }`);
    agents.push(
      await startAgent(cp.url, createJoinToken.token, {
        args: ['--max-jobs', '64'],
        // The first agent is profiled with the control plane.
        nodeArgs:
          values['cpu-prof'] && i === 0 ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}/agent`] : [],
      }),
    );
  }
  await waitFor(
    async () => (await api.ok(`{ agents { state } }`)).agents.every((a) => a.state === 'ONLINE'),
    { what: 'agents online' },
  );

  // The load generator's own CPU counts against the same two cores, so submits go over node:http
  // with a kept-alive connection pool and a prebuilt body (fetch cost ~2 ms of CPU a job here).
  const submitBody = JSON.stringify({
    query: `mutation { submitJob(input: { kind: COMMAND, command: ["true"], timeoutSeconds: 60 }) { id } }`,
  });
  keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const submit = () =>
    new Promise((resolve, reject) => {
      const req = http.request(
        cp.graphqlUrl,
        {
          method: 'POST',
          agent: keepAlive,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(submitBody),
            authorization: `Bearer ${org.adminToken}`,
          },
        },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString();
            if (res.statusCode === 200 && !text.includes('"errors"')) resolve();
            else reject(new Error(`submitJob ${res.statusCode}: ${text.slice(0, 200)}`));
          });
        },
      );
      req.on('error', reject);
      req.end(submitBody);
    });
  for (let i = 0; i < 20; i++) await submit(); // warm-up: JIT, pools, consumers
  await waitFor(
    async () =>
      Number((await query(db.adminUrl, `SELECT count(*) AS n FROM jobs WHERE finished_at IS NULL`))[0].n) ===
      0,
    {
      what: 'warm-up to finish',
    },
  );
  const warm = (await query(db.adminUrl, `SELECT max(created_at) AS t FROM jobs`))[0].t;

  // Open-loop load: one submit every 1/rate s, whatever the responses do.
  const total = rate * seconds;
  const pending = [];
  const errors = [];
  const cpu0 = cpuSeconds(cp, agents);
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(submit().catch((err) => errors.push(String(err))));
  }
  await Promise.all(pending);
  const offeredSeconds = (performance.now() - t0) / 1000;
  const cpu1 = cpuSeconds(cp, agents);
  await waitFor(
    async () =>
      Number((await query(db.adminUrl, `SELECT count(*) AS n FROM jobs WHERE finished_at IS NULL`))[0].n) ===
      0,
    {
      what: 'all jobs to finish',
      timeoutMs: 120_000,
      intervalMs: 500,
    },
  ).catch(async (err) => {
    console.error(await query(db.adminUrl, `SELECT state, state_reason, count(*) FROM jobs GROUP BY 1, 2`));
    throw err;
  });

  const [stats] = await query(
    db.adminUrl,
    `SELECT count(*) AS jobs,
            count(*) FILTER (WHERE state = 'SUCCEEDED') AS succeeded,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at) * 1000) AS p50,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at) * 1000) AS p99,
            max(extract(epoch FROM started_at - created_at) * 1000) AS max,
            extract(epoch FROM max(started_at) - min(created_at)) AS span_running,
            extract(epoch FROM max(finished_at) - min(created_at)) AS span_done
       FROM jobs WHERE created_at > $1`,
    [warm],
  );
  // Where the time goes: to the attempt's creation (assignment), to the outbox row's publication
  // (relay), to the claim (agent pulled it and the control plane answered).
  const [stages] = await query(
    db.adminUrl,
    `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.created_at - j.created_at) * 1000) AS assigned,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM o.published_at - j.created_at) * 1000) AS published,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.started_at - j.created_at) * 1000) AS running
       FROM jobs j JOIN job_attempts a ON a.job_id = j.id AND a.number = 1 JOIN outbox o ON o.msg_id = a.id::text
      WHERE j.created_at > $1`,
    [warm],
  );
  const result = {
    date: new Date().toISOString(),
    machine: '2 cores, 24 GB; Postgres 15, nats-server 2.9 local',
    agents: agentCount,
    offeredRate: rate,
    offeredSeconds: Number(offeredSeconds.toFixed(2)),
    jobs: Number(stats.jobs),
    submitErrors: errors.length,
    succeeded: Number(stats.succeeded),
    submitToRunningMs: { p50: round(stats.p50), p99: round(stats.p99), max: round(stats.max) },
    p50StagesMs: {
      assigned: round(stages.assigned),
      published: round(stages.published),
      running: round(stages.running),
    },
    // CPU time per submitted job while the load ran (ms), by component; the machine has 2 cores.
    cpuMsPerJob: Object.fromEntries(
      Object.keys(cpu1).map((k) => [k, round(((cpu1[k] - cpu0[k]) * 1000) / total)]),
    ),
    dispatchedPerSecond: round(Number(stats.jobs) / Number(stats.span_running)),
    completedPerSecond: round(Number(stats.jobs) / Number(stats.span_done)),
  };
  console.log(JSON.stringify(result, null, 2));
  if (errors.length) console.error('first submit errors:', errors.slice(0, 3));
  mkdirSync('bench/dispatch', { recursive: true });
  writeFileSync(
    `bench/dispatch/results-${result.date.slice(0, 19).replace(/:/g, '')}.json`,
    JSON.stringify(result, null, 2),
  );
} finally {
  keepAlive?.destroy();
  for (const a of agents) await a.proc.stop();
  await cp.stop();
  await db.drop();
}

function round(x) {
  return Math.round(Number(x) * 10) / 10;
}

/** CPU seconds (user + system) so far of each component, from /proc (Linux). */
function cpuSeconds(cp, agents) {
  const tick = 100; // USER_HZ
  const stat = (pid) => {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      return {
        self: (Number(f[11]) + Number(f[12])) / tick,
        children: (Number(f[13]) + Number(f[14])) / tick,
      };
    } catch {
      return { self: 0, children: 0 }; // exited
    }
  };
  const byName = (name) => {
    let sum = 0;
    for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === name) sum += stat(pid).self;
      } catch {
        // gone
      }
    }
    return sum;
  };
  const agentStats = agents.map((a) => stat(a.proc.pid));
  const own = process.cpuUsage();
  return {
    controlPlane: stat(cp.proc.pid).self,
    agents: agentStats.reduce((s, a) => s + a.self, 0),
    jobProcesses: agentStats.reduce((s, a) => s + a.children, 0),
    postgres: byName('postgres'),
    natsServer: byName('nats-server'),
    benchClient: (own.user + own.system) / 1e6,
  };
}
