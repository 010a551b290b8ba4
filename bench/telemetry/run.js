// bench/telemetry: sustained telemetry ingest with the fleet simulator.
//   npm run build && node bench/telemetry/run.js [--agents 12500] [--gpus 8] [--interval 5] [--seconds 60]
// A real control plane (`hearth serve`) on the local Postgres and nats-server; the simulator in its own
// process publishes every virtual agent's sample once per interval to the agent's own subject in
// JetStream. The agents (and a RUNNING job for each, so GPU samples are attributed) are seeded straight
// into the database: enrolling 10,000 agents through join would measure join.
// Throughput: GPU samples committed per second (the control plane's own counter) over the measured
// window, after a warm-up. Lag: from a sample being taken (its `at`) to its rows committed in Postgres,
// per message, from the control plane's histogram (its bucket bounds are the resolution).
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { TELEMETRY_STREAM } from '@hearth/contracts';
import {
  createOrganization,
  createTestDatabase,
  HEARTH_BIN,
  query,
  REPO_ROOT,
  startControlPlane,
  startProcess,
} from '@hearth/testing';

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '12500' },
    gpus: { type: 'string', default: '8' },
    interval: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '60' },
    warmup: { type: 'string', default: '20' },
    nats: { type: 'string', default: 'nats://127.0.0.1:4222' },
  },
});
const agentCount = Number(values.agents);
const gpus = Number(values.gpus);
const interval = Number(values.interval);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const offered = (agentCount * gpus) / interval;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dir = `${REPO_ROOT}bench/telemetry`;

/** prom-client text → { 'name{labels}': value }. */
async function metrics(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^(hearth_telemetry_[a-z_]+(?:\{[^}]*\})?) (\S+)$/);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** The lag histogram's buckets between two scrapes: quantile q as "≤ bound". */
function quantile(before, after, q) {
  const buckets = Object.keys(after)
    .filter((k) => k.startsWith('hearth_telemetry_ingest_lag_seconds_bucket'))
    .map((k) => ({ le: k.match(/le="([^"]+)"/)[1], n: after[k] - (before[k] ?? 0) }))
    .map((b) => ({ le: b.le === '+Inf' ? Infinity : Number(b.le), n: b.n }))
    .sort((a, b) => a.le - b.le);
  const total = buckets.at(-1).n;
  return { count: total, le: buckets.find((b) => b.n >= q * total)?.le ?? null };
}

/** Ingest flushes in the window: how many, and their mean duration. */
function flushStats(before, after) {
  const n = after.hearth_telemetry_flush_seconds_count - (before.hearth_telemetry_flush_seconds_count ?? 0);
  const sum = after.hearth_telemetry_flush_seconds_sum - (before.hearth_telemetry_flush_seconds_sum ?? 0);
  return { count: n, meanMs: n ? Math.round((sum / n) * 1000) : null };
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds of every process whose command is `name` (Postgres runs one per connection). */
function cpuSecondsOf(name) {
  let total = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === name) total += cpuSeconds(pid);
    } catch {
      // gone
    }
  }
  return total;
}

/** Busy CPU seconds of the whole machine (every process: Postgres, nats-server, …). */
function machineBusySeconds() {
  const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).map(Number);
  const idle = ticks[3] + ticks[4];
  return (ticks.reduce((a, b) => a + b, 0) - idle) / 100;
}

const db = await createTestDatabase();
const cpEnv = {
  DATABASE_URL: db.appUrl,
  NATS_URL: values.nats,
  DATABASE_POOL_SIZE: '10',
  TELEMETRY_STREAM_MAX_MSGS_PER_AGENT: '1000',
  LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'info',
};
// BENCH_CPU_PROFILE=<dir>: the control plane writes a V8 CPU profile there when it stops.
const cp = process.env.BENCH_CPU_PROFILE
  ? await profiled(cpEnv, process.env.BENCH_CPU_PROFILE)
  : await startControlPlane(cpEnv);

/** `hearth serve` under `node --cpu-prof` (not allowed in NODE_OPTIONS, so started here). */
async function profiled(env, dir) {
  const proc = startProcess(
    process.execPath,
    ['--cpu-prof', `--cpu-prof-dir=${dir}`, HEARTH_BIN, 'serve'],
    { PORT: '0', HOST: '127.0.0.1', ...env },
    'control-plane',
  );
  const line = await proc.waitForLine((l) => l.includes('"control plane listening"'), 30_000);
  return { url: JSON.parse(line).url, proc, stop: () => proc.stop() };
}
let sim;
try {
  const nc = await connect({ servers: values.nats });
  await (await jetstreamManager(nc)).streams.purge(TELEMETRY_STREAM).catch(() => undefined);
  await nc.close();

  const org = await createOrganization(db.appUrl, 'Telemetry Bench');
  const [admin] = await query(db.adminUrl, `SELECT id FROM users WHERE tenant_id = $1`, [org.organizationId]);
  const gpuInfo = JSON.stringify(
    Array.from({ length: gpus }, () => ({
      vendor: 'nvidia',
      name: 'NVIDIA H100 80GB HBM3',
      memoryBytes: 85520809984,
    })),
  );
  const agents = await query(
    db.adminUrl,
    `INSERT INTO agents (id, tenant_id, public_key, hostname, os, arch, cpus, memory_bytes, gpus, agent_version, capacity, last_heartbeat_at)
     SELECT gen_random_uuid(), $1, 'U' || md5(random()::text || i), 'sim-' || i, 'Linux', 'x64', 192, 2113123909632, $2::jsonb, 'sim', 8, now()
       FROM generate_series(1, $3) i RETURNING id`,
    [org.organizationId, gpuInfo, agentCount],
  );
  const jobs = await query(
    db.adminUrl,
    `INSERT INTO jobs (id, tenant_id, kind, command, timeout_seconds, max_attempts, state, agent_id, created_by, started_at, gpus)
     SELECT gen_random_uuid(), $1, 'COMMAND', '["train.py"]', 86400, 1, 'RUNNING', a, $2, now(), 1
       FROM unnest($3::uuid[]) a, generate_series(1, 2) RETURNING id, agent_id`,
    [org.organizationId, admin.id, agents.map((a) => a.id)],
  );
  // Each job RUNNING on its agent, as a claimed attempt (leased past the run): the control plane
  // charges a GPU reading to a job only inside an attempt of that job on the agent that sent it.
  await query(
    db.adminUrl,
    `WITH a AS (
       INSERT INTO job_attempts (id, tenant_id, job_id, number, fencing_token, agent_id, state, lease_expires_at, started_at)
       SELECT gen_random_uuid(), $1, j, 1, 1, g, 'RUNNING', now() + interval '1 day', now() - interval '1 minute'
         FROM unnest($2::uuid[], $3::uuid[]) AS t(j, g) RETURNING id, job_id)
     UPDATE jobs SET current_attempt_id = a.id, attempts = 1 FROM a WHERE jobs.id = a.job_id`,
    [org.organizationId, jobs.map((j) => j.id), jobs.map((j) => j.agent_id)],
  );
  const jobsOf = new Map();
  for (const j of jobs) jobsOf.set(j.agent_id, [...(jobsOf.get(j.agent_id) ?? []), j.id]);
  mkdirSync(`${REPO_ROOT}.tmp`, { recursive: true });
  const file = `${REPO_ROOT}.tmp/telemetry-bench-agents.json`;
  writeFileSync(
    file,
    JSON.stringify(
      agents.map((a) => ({ tenantId: org.organizationId, agentId: a.id, gpus, jobs: jobsOf.get(a.id) })),
    ),
  );

  sim = spawn(process.execPath, [`${dir}/simulate.js`, '--agents', file, '--interval', String(interval)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let simOut = '';
  sim.stdout.on('data', (d) => (simOut += d));
  const simDone = new Promise((r) => sim.once('exit', r));

  await sleep(warmup * 1000);
  const before = await metrics(cp.url);
  const cpu = () => ({
    cp: cpuSeconds(cp.proc.pid),
    sim: cpuSeconds(sim.pid),
    postgres: cpuSecondsOf('postgres'),
    nats: cpuSecondsOf('nats-server'),
    all: machineBusySeconds(),
  });
  const cpu0 = cpu();
  const t0 = performance.now();
  // BENCH_TIMELINE=1: every 5 s, how many messages took over 2 s (when the tail happens).
  const timeline = [];
  for (let last = before, t = 0; t < seconds; t += 5) {
    await sleep(5000);
    if (!process.env.BENCH_TIMELINE) continue;
    const now = await metrics(cp.url);
    const le2 = (m) => m['hearth_telemetry_ingest_lag_seconds_bucket{le="2"}'] ?? 0;
    const all = (m) => m['hearth_telemetry_ingest_lag_seconds_count'] ?? 0;
    timeline.push(`${t + 5}s:${all(now) - all(last) - (le2(now) - le2(last))}`);
    last = now;
  }
  if (timeline.length) console.log(`messages over 2 s, per 5 s: ${timeline.join(' ')}`);
  const after = await metrics(cp.url);
  const elapsed = (performance.now() - t0) / 1000;
  const cpu1 = cpu();
  sim.kill('SIGTERM');
  await simDone;

  const gpuKey = 'hearth_telemetry_samples_total{kind="gpu"}';
  const hostKey = 'hearth_telemetry_samples_total{kind="host"}';
  const gpuRate = (after[gpuKey] - (before[gpuKey] ?? 0)) / elapsed;
  const hostRate = (after[hostKey] - (before[hostKey] ?? 0)) / elapsed;
  const p50 = quantile(before, after, 0.5);
  const p99 = quantile(before, after, 0.99);
  const [stored] = await query(db.adminUrl, `SELECT sum(cardinality(gpu))::int AS n FROM telemetry_samples`);
  const result = {
    date: new Date().toISOString(),
    agents: agentCount,
    gpusPerAgent: gpus,
    intervalSeconds: interval,
    seconds: Math.round(elapsed),
    offeredGpuSamplesPerSecond: offered,
    gpuSamplesPerSecond: Math.round(gpuRate),
    hostSamplesPerSecond: Math.round(hostRate),
    messages: p99.count,
    lagP50AtMostSeconds: p50.le,
    lagP95AtMostSeconds: quantile(before, after, 0.95).le,
    lagP99AtMostSeconds: p99.le,
    flushes: flushStats(before, after),
    cpuCores: {
      controlPlane: Number(((cpu1.cp - cpu0.cp) / elapsed).toFixed(2)),
      simulator: Number(((cpu1.sim - cpu0.sim) / elapsed).toFixed(2)),
      postgres: Number(((cpu1.postgres - cpu0.postgres) / elapsed).toFixed(2)),
      natsServer: Number(((cpu1.nats - cpu0.nats) / elapsed).toFixed(2)),
      wholeMachine: Number(((cpu1.all - cpu0.all) / elapsed).toFixed(2)),
    },
    gpuRowsStored: stored.n,
    simulator: JSON.parse(simOut || '{}'),
  };
  console.log(JSON.stringify(result, null, 2));
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/results-${Date.now()}.json`, JSON.stringify(result, null, 2));
} finally {
  if (sim && sim.exitCode === null) sim.kill('SIGKILL');
  await cp.stop();
  await db.drop();
}
