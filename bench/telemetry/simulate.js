// bench/telemetry/simulate.js: the virtual fleet, in its own process (the load generator must not
// share the control plane's event loop). Reads the agents from a JSON file, publishes each agent's
// telemetry to its own subject in JetStream (awaiting the stream's ack, as a real agent does) until
// SIGTERM, then prints its counts as one JSON line.
//   node bench/telemetry/simulate.js --agents agents.json --interval 5 [--nats nats://127.0.0.1:4222]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { subjects } from '@hearth/contracts';
import { FleetSimulator, runFleet } from '../../apps/agent/dist/telemetry/simulator.js';

const { values } = parseArgs({
  options: {
    agents: { type: 'string' },
    interval: { type: 'string', default: '5' },
    nats: { type: 'string', default: 'nats://127.0.0.1:4222' },
    seed: { type: 'string', default: '1' },
  },
});
const agents = JSON.parse(readFileSync(values.agents, 'utf8'));
const nc = await connect({ servers: values.nats, name: 'hearth-telemetry-simulator' });
const js = jetstream(nc);
const sim = new FleetSimulator({
  agents,
  intervalSeconds: Number(values.interval),
  seed: Number(values.seed),
});
const stop = new AbortController();
process.on('SIGTERM', () => stop.abort());
process.on('SIGINT', () => stop.abort());
let firstError = null;
const encoder = new TextEncoder();
// The message is built by the contract's own builder; the control plane validates every one.
const publish = (agent, message) =>
  js.publish(subjects.telemetry(agent), encoder.encode(JSON.stringify(message)), { timeout: 10_000 });
const stats = await runFleet(sim, publish, stop.signal, { onError: (err) => (firstError ??= String(err)) });
await nc.drain();
process.stdout.write(`${JSON.stringify({ ...stats, firstError })}\n`);
