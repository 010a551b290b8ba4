import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Counter, Registry } from 'prom-client';
import { createLogger } from '../logger.js';
import { MetricsEndpointError, startMetricsServer, type MetricsServer } from './metrics-server.js';

const registry = new Registry();
const jobs = new Counter({ name: 'test_jobs_total', help: 'Jobs.', registers: [registry] });
const logger = createLogger('silent');
let server: MetricsServer;

beforeAll(async () => {
  server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry, logger });
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
    expect(await res.text()).toBe('not found: the metrics are at /metrics\n');
    res = await fetch(`${base}/v2/health/live`);
    expect(res.status).toBe(404);
    res = await fetch(server.url, { method: 'POST', body: 'x' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    // Still serving after all that.
    expect((await fetch(server.url)).status).toBe(200);
  });

  it('says which address it could not listen on, and why', async () => {
    const port = Number(new URL(server.url).port);
    const err = await startMetricsServer({ host: '127.0.0.1', port, registry, logger }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MetricsEndpointError);
    expect((err as Error).message).toBe(
      `the metrics endpoint cannot listen on 127.0.0.1:${port}: EADDRINUSE (the port is in use: choose ` +
        'another with "metrics.port" in the local policy or --metrics-port)',
    );
  });
});
