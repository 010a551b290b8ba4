import { consumers, DOWN_STREAM } from '@hearth/contracts';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

/**
 * The nats-server a test file shares with the files before and after it: in the integration suite
 * its jest worker's own (integration.global-setup.mjs), so files on different workers share no
 * stream; elsewhere (benchmarks, a lone run) NATS_URL or the machine's own.
 */
export const SHARED_NATS_URL = workerNatsUrl() ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

function workerNatsUrl(): string | undefined {
  const urls = (process.env.HEARTH_TEST_NATS_URLS ?? '').split(',').filter(Boolean);
  if (urls.length === 0) return undefined;
  const worker = Number(process.env.JEST_WORKER_ID) || 1;
  return urls[(worker - 1) % urls.length];
}

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
