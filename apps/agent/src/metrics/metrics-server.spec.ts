import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Counter, Registry } from 'prom-client';
import {
  httpsRequest,
  issueCertificate,
  makeCertificateAuthority,
  revocationList,
  waitFor,
} from '@hearth/testing';
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

  it('closes a request whose headers stall within seconds of its 5 s headers timeout', async () => {
    const { hostname, port } = new URL(server.url);
    const socket = net.connect(Number(port), hostname);
    socket.on('error', () => undefined);
    let reply = '';
    socket.on('data', (data: Buffer) => (reply += data.toString()));
    const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
    socket.write('GET /metrics HTTP/1.1\r\nhost: x\r\n'); // and never the blank line
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 9_000).unref());
    expect(await Promise.race([closed, timeout])).toBe(true);
    expect(reply).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    socket.destroy();
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

describe('startMetricsServer with metrics.tls', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-metrics-tls-'));
  const serverCa = makeCertificateAuthority(dir, 'server-ca');
  const scraperCa = makeCertificateAuthority(dir, 'scraper-ca');
  const strangerCa = makeCertificateAuthority(dir, 'stranger-ca');
  const endpoint = issueCertificate(serverCa, dir, 'agent-metrics');
  const prometheus = issueCertificate(scraperCa, dir, 'prometheus');
  const stranger = issueCertificate(strangerCa, dir, 'stranger');
  const started: MetricsServer[] = [];
  const start = async (clientCaFile: string | null, crlFile: string | null = null) => {
    const s = await startMetricsServer({
      host: '127.0.0.1',
      port: 0,
      registry,
      ready,
      logger,
      tls: { certFile: endpoint.cert, keyFile: endpoint.key, clientCaFile, crlFile },
      tlsReloadMs: 50,
    });
    started.push(s);
    return s;
  };
  afterAll(async () => {
    for (const s of started) await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves the metrics and probes over HTTPS with its certificate; plain HTTP gets no answer', async () => {
    const tlsServer = await start(null);
    expect(tlsServer.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const scrape = await httpsRequest(tlsServer.url, { ca: serverCa.cert });
    expect(scrape.status).toBe(200);
    expect(scrape.text).toContain('test_jobs_total');
    const readyz = await httpsRequest(tlsServer.url.replace('/metrics', '/readyz'), { ca: serverCa.cert });
    expect(readyz.status).toBe(connected ? 200 : 503);
    await expect(fetch(tlsServer.url.replace('https:', 'http:'))).rejects.toThrow();
    await expect(httpsRequest(tlsServer.url, { ca: strangerCa.cert })).rejects.toThrow(/certificate/i);
  });

  it('with a client CA answers only scrapers holding a certificate it issued, everyone else 403', async () => {
    const mtls = await start(scraperCa.cert);
    const trusted = await httpsRequest(mtls.url, { ca: serverCa.cert, client: prometheus });
    expect(trusted.status).toBe(200);
    expect(trusted.text).toContain('test_jobs_total');
    for (const client of [undefined, stranger]) {
      const refused = await httpsRequest(mtls.url, { ca: serverCa.cert, client });
      expect(refused).toMatchObject({
        status: 403,
        text: 'forbidden: this endpoint answers only clients with a certificate issued by the CA it trusts (mutual TLS)\n',
      });
    }
  });

  it('refuses a scraper its revocation list names, and answers it again once a renewed list does not', async () => {
    const s = await start(scraperCa.cert, revocationList(scraperCa, dir, 'scrapers', [prometheus]));
    const scrape = async () => (await httpsRequest(s.url, { ca: serverCa.cert, client: prometheus })).status;
    expect(await scrape()).toBe(403);
    revocationList(scraperCa, dir, 'scrapers', []);
    await waitFor(async () => (await scrape()) === 200, {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: 'the renewed list to be applied',
    });
  });

  it('refuses to start with files that cannot serve, naming metrics.tls', async () => {
    await expect(
      startMetricsServer({
        host: '127.0.0.1',
        port: 0,
        registry,
        ready,
        logger,
        tls: { certFile: endpoint.cert, keyFile: stranger.key, clientCaFile: null },
      }),
    ).rejects.toThrow(
      `metrics.tls.keyFile ${stranger.key} is not the private key of the certificate in ${endpoint.cert}`,
    );
  });
});
