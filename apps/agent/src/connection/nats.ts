/**
 * The agent's one NATS connection: outbound only, its own inbox prefix (the server lets it
 * subscribe nowhere else), JWT + nkey auth when the control plane issued a JWT, and reconnects
 * forever with backoff and jitter. The first connect is retried the same way until it succeeds
 * or the signal aborts.
 */
import { agentInboxPrefix } from '@hearth/contracts';
import {
  connect,
  jwtAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import { errorMessage, type Logger } from '../logger.js';
import { backoffDelay, sleep, type BackoffPolicy } from './backoff.js';
import type { AgentIdentity } from './credentials.js';

// Capped at 5 s: a short NATS restart must not keep the fleet away for half a minute; the jitter
// spreads a large fleet's reconnects.
const RECONNECT_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 5_000 };

/** Reconnect attempts since the last successful connection (drives the backoff). */
interface ReconnectPacer {
  attempts: number;
}

export function connectionOptions(
  identity: AgentIdentity,
  servers: readonly string[],
  pacer: ReconnectPacer = { attempts: 0 },
): NodeConnectionOptions {
  const { agentId, natsJwt } = identity.file;
  return {
    servers: [...servers],
    name: `hearth-agent-${agentId}`,
    inboxPrefix: agentInboxPrefix(agentId),
    ...(natsJwt === null ? {} : { authenticator: jwtAuthenticator(natsJwt, identity.seed) }),
    maxReconnectAttempts: -1,
    reconnectDelayHandler: () => backoffDelay(pacer.attempts++, RECONNECT_BACKOFF),
    pingInterval: 20_000,
    maxPingOut: 3,
  };
}

/** Whether the NATS connection is up now: set by connectWithRetry and its status watcher. */
export class ConnectionState {
  connected = false;
}

export async function connectWithRetry(
  identity: AgentIdentity,
  servers: readonly string[],
  logger: Logger,
  signal: AbortSignal,
  state: ConnectionState = new ConnectionState(),
): Promise<NatsConnection | null> {
  for (let i = 0; !signal.aborted; i++) {
    try {
      const pacer: ReconnectPacer = { attempts: 0 };
      const nc = await connect(connectionOptions(identity, servers, pacer));
      logger.info({ server: nc.getServer() }, 'connected to NATS');
      state.connected = true;
      void watchStatus(nc, pacer, logger, state);
      return nc;
    } catch (err) {
      const delay = backoffDelay(i, RECONNECT_BACKOFF);
      logger.warn({ err: errorMessage(err), servers, retryInMs: delay }, 'cannot connect to NATS; retrying');
      await sleep(delay, signal);
    }
  }
  return null;
}

async function watchStatus(
  nc: NatsConnection,
  pacer: ReconnectPacer,
  logger: Logger,
  state: ConnectionState,
): Promise<void> {
  for await (const status of nc.status()) {
    switch (status.type) {
      case 'disconnect':
        state.connected = false;
        logger.warn({ server: status.server }, 'disconnected from NATS');
        break;
      case 'reconnect':
        state.connected = true;
        pacer.attempts = 0;
        logger.info({ server: status.server }, 'reconnected to NATS');
        break;
      case 'error':
        logger.warn({ err: errorMessage(status.error) }, 'NATS connection error');
        break;
      default:
        logger.debug({ status: status.type }, 'NATS status');
    }
  }
  state.connected = false; // the iterator ends when the connection closes
}
