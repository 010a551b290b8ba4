/**
 * The agent's monitoring endpoint, on the local policy's `metrics` address (off unless a port is
 * set): GET /metrics in Prometheus' text format, and the probes a supervisor or an orchestrator
 * asks, as the control plane answers them: /healthz (the process answers) and /readyz (connected to
 * the control plane, else 503). node:http rather than a framework: three read-only routes, and the
 * agent must stay small. With the policy's metrics.tls it speaks HTTPS, and mutual TLS with a
 * client CA (the files and their rotation as the inference server's serve.tls).
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Registry } from 'prom-client';
import { errorMessage, type Logger } from '../logger.js';
import type { ServeTlsPolicy } from '../policy/local-policy.js';
import {
  STALE_CLIENT,
  keepServerTlsCurrent,
  loadServeTls,
  secureContextOptions,
  type ServerTlsWatch,
} from '../serve/serve-tls.js';

export interface MetricsServer {
  /** Where Prometheus scrapes, e.g. http://127.0.0.1:9464/metrics. */
  readonly url: string;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  host: string;
  /** 0: any free port. */
  port: number;
  registry: Registry;
  /** Whether the agent can take jobs now (its NATS connection is up), for /readyz. */
  ready: () => boolean;
  logger: Logger;
  /**
   * HTTPS with these files (the local policy's metrics.tls, checked at start), re-read when they
   * change; with a client CA only scrapers holding a certificate it issued are answered. null or
   * absent: plain HTTP.
   */
  tls?: ServeTlsPolicy | null;
  /** How often the TLS files are looked at for a change (tests shorten it). */
  tlsReloadMs?: number;
}

const ROUTES = new Set(['/metrics', '/healthz', '/readyz']);

/** The endpoint cannot listen where it was told to; the message says where and why. */
export class MetricsEndpointError extends Error {
  override readonly name = 'MetricsEndpointError';
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { registry, logger } = options;
  const tlsMaterial = options.tls ? loadServeTls(options.tls, new Date(), 'metrics.tls') : null;
  const clientCertificates = tlsMaterial !== null && tlsMaterial.ca !== null;
  let tlsWatch: ServerTlsWatch | null = null;
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (tlsWatch?.staleClient(req.socket as TLSSocket)) {
      res.writeHead(421, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end(`${STALE_CLIENT}\n`);
      return;
    }
    // As the inference server: the handshake lets a client without a certificate through, and the
    // answer says what is missing rather than a bare TLS alert.
    if (clientCertificates && !(req.socket as TLSSocket).authorized) {
      tlsWatch?.refused(req.socket as TLSSocket);
      res.writeHead(403, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end(
        'forbidden: this endpoint answers only clients with a certificate issued by the CA it trusts (mutual TLS)\n',
      );
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    if (!ROUTES.has(path)) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('not found: the metrics are at /metrics, the probes at /healthz and /readyz\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end(`method not allowed: GET ${path}\n`);
      return;
    }
    if (path !== '/metrics') {
      const ready = options.ready();
      const body =
        path === '/healthz'
          ? { status: 'ok' }
          : { status: ready ? 'ready' : 'not ready', nats: ready ? 'connected' : 'disconnected' };
      res.writeHead(path === '/readyz' && !ready ? 503 : 200, {
        'content-type': 'application/json; charset=utf-8',
        'cache-control': 'no-store',
      });
      res.end(req.method === 'HEAD' ? undefined : JSON.stringify(body));
      return;
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        logger.error({ err: errorMessage(err) }, 'collecting metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('collecting metrics failed (see the agent log)\n');
      },
    );
  };
  // A scraper that stalls must not hold a socket for long. Node enforces these timeouts only when it
  // checks its connections, every 30 s by default: a stalled request then held its socket for up to
  // 35 s, not 5.
  const httpOptions: http.ServerOptions = {
    requestTimeout: 10_000,
    headersTimeout: 5_000,
    keepAliveTimeout: 65_000,
    connectionsCheckingInterval: 1_000,
  };
  const server: http.Server = tlsMaterial
    ? https.createServer({ ...secureContextOptions(tlsMaterial), ...httpOptions }, onRequest)
    : http.createServer(httpOptions, onRequest);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new MetricsEndpointError(
          `the metrics endpoint cannot listen on ${options.host}:${options.port}: ${err.code ?? err.message}` +
            (err.code === 'EADDRINUSE'
              ? ' (the port is in use: choose another with "metrics.port" in the local policy or --metrics-port)'
              : ''),
        ),
      ),
    );
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  const url = `${tlsMaterial ? 'https' : 'http'}://${host}:${port}/metrics`;
  logger.info(
    { url, ...(tlsMaterial ? { certificate: tlsMaterial.certificate, clientCertificates } : {}) },
    'metrics endpoint listening',
  );
  tlsWatch = options.tls
    ? keepServerTlsCurrent(server as https.Server, options.tls, {
        where: 'metrics.tls',
        what: 'metrics endpoint',
        logger,
        ca: tlsMaterial?.ca ?? null,
        crl: tlsMaterial?.crl ?? null,
        intervalMs: options.tlsReloadMs,
      })
    : null;
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        tlsWatch?.stop();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
