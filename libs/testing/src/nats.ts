import { consumers, DOWN_STREAM } from '@hearth/contracts';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

/** The nats-server the tests and benchmarks share (the machine's own). */
export const SHARED_NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/**
 * Deletes the durable consumers of these agents from the shared nats-server. They outlive the test
 * database their agents were in; left behind, every test run adds two per agent, and each message
 * published to the stream is checked against all of them (measured: 330 stale consumers made the
 * dispatch benchmark's nats-server cost per job 1.5× what it was on a clean server).
 */
export async function deleteAgentConsumers(
  agentIds: readonly string[],
  url = SHARED_NATS_URL,
): Promise<void> {
  if (!agentIds.length) return;
  const nc = await connect({ servers: url, timeout: 2000, reconnect: false });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 2000 });
    for (const id of agentIds) {
      for (const name of [consumers.jobs(id), consumers.control(id)]) {
        await jsm.consumers.delete(DOWN_STREAM, name).catch(() => false); // absent: not on this server
      }
    }
  } finally {
    await nc.close();
  }
}
