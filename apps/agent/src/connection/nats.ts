/**
 * The agent's one NATS connection: outbound only, its own inbox prefix (the server lets it
 * subscribe nowhere else), JWT + nkey auth when the control plane issued a JWT, and reconnects
 * forever with backoff and jitter. The first connect is retried the same way until it succeeds
 * or the signal aborts.
 */
import { agentInboxPrefix, isNatsServerWithoutTls, natsTlsRequired } from '@hearth/contracts';
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

/** How the agent reaches NATS: the servers, and whether only TLS will do (natsTlsRequired). */
export interface NatsTarget {
  readonly servers: readonly string[];
  readonly tlsRequired: boolean;
  /** Whether --allow-plaintext lifted a TLS requirement the servers would otherwise have had. */
  readonly plaintextAllowed: boolean;
}

/** The target for `servers`: TLS is required beyond this machine unless plaintext is allowed. */
export function natsTarget(servers: readonly string[], allowPlaintext: boolean): NatsTarget {
  const strict = natsTlsRequired(servers, { beyondLoopback: true });
  const tlsRequired = allowPlaintext ? natsTlsRequired(servers, { beyondLoopback: false }) : strict;
  return { servers, tlsRequired, plaintextAllowed: strict && !tlsRequired };
}

export function connectionOptions(
  identity: AgentIdentity,
  target: NatsTarget,
  pacer: ReconnectPacer = { attempts: 0 },
): NodeConnectionOptions {
  const { agentId, natsJwt } = identity.file;
  return {
    servers: [...target.servers],
    // An empty TLS options object: TLS or nothing, the server's certificate verified against the
    // system's CAs and NODE_EXTRA_CA_CERTS. Without it the client takes TLS only where offered.
    ...(target.tlsRequired ? { tls: {} } : {}),
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
  target: NatsTarget,
  logger: Logger,
  signal: AbortSignal,
  state: ConnectionState = new ConnectionState(),
): Promise<NatsConnection | null> {
  const { servers, tlsRequired } = target;
  for (let i = 0; !signal.aborted; i++) {
    try {
      const pacer: ReconnectPacer = { attempts: 0 };
      const nc = await connect(connectionOptions(identity, target, pacer));
      // The client upgrades whenever the server offers TLS, so this is whether the link is encrypted.
      const tls = tlsRequired || nc.info?.tls_required === true || nc.info?.tls_available === true;
      logger.info({ server: nc.getServer(), tls }, 'connected to NATS');
      state.connected = true;
      void watchStatus(nc, pacer, logger, state);
      return nc;
    } catch (err) {
      const delay = backoffDelay(i, RECONNECT_BACKOFF);
      const message = errorMessage(err);
      logger.warn(
        { err: message, servers, tlsRequired, retryInMs: delay, ...hintFor(err, message, tlsRequired) },
        'cannot connect to NATS; retrying',
      );
      await sleep(delay, signal);
    }
  }
  return null;
}

/** What the person installing the agent can do about a refused connection, where we know. */
function hintFor(err: unknown, message: string, tlsRequired: boolean): { hint?: string } {
  if (tlsRequired && isNatsServerWithoutTls(err))
    return {
      hint:
        'this NATS server offers no TLS, and the agent speaks to a server beyond this machine (or ' +
        'named tls://) over TLS only: enable TLS on the server, or pass --allow-plaintext on a ' +
        'network you trust',
    };
  if (/certificate|self[- ]signed|unable to (get|verify)/i.test(message))
    return {
      hint:
        "the NATS server's certificate is not trusted here: if your own CA issued it, give the " +
        'agent NODE_EXTRA_CA_CERTS=<CA file, PEM>',
    };
  return {};
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
