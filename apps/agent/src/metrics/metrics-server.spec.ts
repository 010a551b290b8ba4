import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Counter, Registry } from 'prom-client';
import { createLogger } from '../logger.js';
import { MetricsEndpointError, startMetricsServer, type MetricsServer } from './metrics-server.js';

const registry = new Registry();
const jobs = new Counter({ name: 'test_jobs_total', help: 'Jobs.', registers: [registry] });
const logger = createLogger('silent');
let connected = true;
const ready = () => connected;
let server: MetricsServer;

beforeAll(async () => {
  server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry, ready, logger });
});

afterAll(async () => {
  await server?.close();
});

describe('startMetricsServer', () => {
  it('answers GET /metrics with the registry in the Prometheus text format, fresh at each scrape', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    jobs.inc(3);
    let res = await fetch(server.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(await res.text()).toContain('# TYPE test_jobs_total counter\ntest_jobs_total 3\n');
    jobs.inc();
    res = await fetch(`${server.url}?x=1`);
    expect(await res.text()).toContain('test_jobs_total 4\n');
    res = await fetch(server.url, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
  });

  it('refuses other paths and methods without a body of metrics', async () => {
    const base = server.url.replace(/\/metrics$/, '');
    let res = await fetch(`${base}/`);
    expect(res.status).toBe(404);
    expect(await res.text()).toBe(
      'not found: the metrics are at /metrics, the probes at /healthz and /readyz\n',
    );
    res = await fetch(`${base}/v2/health/live`);
    expect(res.status).toBe(404);
    res = await fetch(server.url, { method: 'POST', body: 'x' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    res = await fetch(`${base}/readyz`, { method: 'DELETE' });
    expect(res.status).toBe(405);
    expect(await res.text()).toBe('method not allowed: GET /readyz\n');
    // Still serving after all that.
    expect((await fetch(server.url)).status).toBe(200);
  });

  it('answers /healthz while it runs, and /readyz 503 while the agent is not connected', async () => {
    const base = server.url.replace(/\/metrics$/, '');
    const probe = async (path: string) => {
      const res = await fetch(`${base}${path}`);
      return [res.status, await res.json()];
    };
    expect(await probe('/healthz')).toEqual([200, { status: 'ok' }]);
    expect(await probe('/readyz')).toEqual([200, { status: 'ready', nats: 'connected' }]);
    connected = false;
    expect(await probe('/healthz')).toEqual([200, { status: 'ok' }]);
    expect(await probe('/readyz')).toEqual([503, { status: 'not ready', nats: 'disconnected' }]);
    connected = true;
    expect((await probe('/readyz'))[0]).toBe(200);
  });

  it('says which address it could not listen on, and why', async () => {
    const port = Number(new URL(server.url).port);
    const err = await startMetricsServer({ host: '127.0.0.1', port, registry, ready, logger }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MetricsEndpointError);
    expect((err as Error).message).toBe(
      `the metrics endpoint cannot listen on 127.0.0.1:${port}: EADDRINUSE (the port is in use: choose ` +
        'another with "metrics.port" in the local policy or --metrics-port)',
    );
  });
});
