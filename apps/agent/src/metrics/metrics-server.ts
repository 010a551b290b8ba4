/**
 * The agent's monitoring endpoint, on the local policy's `metrics` address (off unless a port is
 * set): GET /metrics in Prometheus' text format, and the probes a supervisor or an orchestrator
 * asks, as the control plane answers them: /healthz (the process answers) and /readyz (connected to
 * the control plane, else 503). node:http rather than a framework: three read-only routes, and the
 * agent must stay small.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorMessage, type Logger } from '../logger.js';
import type { Registry } from 'prom-client';

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
}

const ROUTES = new Set(['/metrics', '/healthz', '/readyz']);

/** The endpoint cannot listen where it was told to; the message says where and why. */
export class MetricsEndpointError extends Error {
  override readonly name = 'MetricsEndpointError';
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { registry, logger } = options;
  const server = http.createServer((req, res) => {
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
  });
  // A scraper that stalls must not hold a socket for long.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 65_000;
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
  const url = `http://${host}:${port}/metrics`;
  logger.info({ url }, 'metrics endpoint listening');
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
