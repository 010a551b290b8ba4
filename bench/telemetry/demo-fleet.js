// bench/telemetry/demo-fleet.js: a lively demo fleet for a running control plane (`npm run demo`).
// Enrolls N virtual agents through the real join endpoint (one join token each, their own nkeys and
// NATS credentials), then keeps each one heartbeating and sending simulated telemetry (8 GPUs each by
// default) on its own subjects, with nats-server enforcing them as for any agent. The virtual agents
// report no free job slots, so the control plane never dispatches a job to them. Stop with Ctrl-C.
//   node bench/telemetry/demo-fleet.js [--agents 20]     (next to `npm run demo`: reads .hearth/demo.json)
//   node bench/telemetry/demo-fleet.js --url http://127.0.0.1:8080 --token <API token> [--agents 20]
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createUser } from '@nats-io/nkeys';
import { connect, jwtAuthenticator } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { AgentHeartbeat, encode, JOIN_PATH, subjects } from '@hearth/contracts';
import { FleetSimulator, runFleet } from '../../apps/agent/dist/telemetry/simulator.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    agents: { type: 'string', default: '20' },
    gpus: { type: 'string', default: '8' },
    interval: { type: 'string', default: '5' },
  },
});
// Without --url and --token: the running demo's, from the file `npm run demo` writes.
const demoFile = `${process.env.HEARTH_HOME ?? '.hearth'}/demo.json`;
if (!values.url && !values.token && existsSync(demoFile)) {
  const demo = JSON.parse(readFileSync(demoFile, 'utf8'));
  values.url = demo.graphqlUrl.replace(/\/graphql$/, '');
  values.token = demo.adminToken;
}
if (!values.url || !values.token) {
  console.error(
    'usage: node bench/telemetry/demo-fleet.js [--url <control plane> --token <API token>] [--agents 20]\n' +
      `(without them it reads ${demoFile}, which \`npm run demo\` writes)`,
  );
  process.exit(2);
}
const count = Number(values.agents);
const gpuCount = Number(values.gpus);

async function graphql(query) {
  const res = await fetch(`${values.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${values.token}` },
    body: JSON.stringify({ query }),
  });
  const body = await res.json();
  if (body.errors?.length) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

const system = (i) => ({
  hostname: `sim-gpu-${String(i).padStart(3, '0')}`,
  os: 'Linux 6.8.0 (simulated)',
  arch: 'x64',
  cpus: 192,
  memoryBytes: 2 * 1024 ** 4,
  gpus: Array.from({ length: gpuCount }, () => ({
    vendor: 'nvidia',
    name: 'NVIDIA H100 80GB HBM3',
    memoryBytes: 85520809984,
  })),
  agentVersion: 'simulated',
});

const fleet = [];
for (let i = 0; i < count; i++) {
  const { createJoinToken } = await graphql(`
    mutation {
      createJoinToken {
        token
      }
    }
  `);
  const key = createUser();
  const res = await fetch(`${values.url}${JOIN_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      token: createJoinToken.token,
      publicKey: key.getPublicKey(),
      labels: { simulated: 'true' },
      system: system(i),
    }),
  });
  if (res.status !== 201) throw new Error(`join failed (${res.status}): ${await res.text()}`);
  const joined = await res.json();
  const nc = await connect({
    servers: joined.natsServers,
    name: `hearth-demo-agent-${joined.agentId}`,
    inboxPrefix: `_INBOX_${joined.agentId}`,
    ...(joined.natsJwt ? { authenticator: jwtAuthenticator(joined.natsJwt, key.getSeed()) } : {}),
  });
  fleet.push({
    tenantId: joined.organizationId,
    agentId: joined.agentId,
    gpus: gpuCount,
    nc,
    js: jetstream(nc),
    i,
  });
}
console.log(
  `demo fleet: ${fleet.length} virtual agents with ${gpuCount} GPUs each, sending every ${values.interval} s`,
);

const stop = new AbortController();
process.on('SIGINT', () => stop.abort());
process.on('SIGTERM', () => stop.abort());
const beats = setInterval(() => {
  for (const a of fleet)
    a.nc.publish(
      subjects.heartbeat(a),
      encode(AgentHeartbeat, {
        type: 'agent.heartbeat',
        v: 1,
        agentId: a.agentId,
        sentAt: new Date().toISOString(),
        running: [],
        freeSlots: 0,
        system: system(a.i),
      }),
    );
}, 2000);
const byId = new Map(fleet.map((a) => [a.agentId, a]));
const sim = new FleetSimulator({ agents: fleet, intervalSeconds: Number(values.interval) });
const stats = await runFleet(
  sim,
  (agent, message) => byId.get(agent.agentId).js.publish(subjects.telemetry(agent), JSON.stringify(message)),
  stop.signal,
  { onError: (err) => console.error(`telemetry not sent: ${err}`) },
);
clearInterval(beats);
await Promise.all(fleet.map((a) => a.nc.drain()));
console.log(`demo fleet stopped: ${stats.sent} messages sent, ${stats.failed} failed`);
