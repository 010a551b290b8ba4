/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 *
 * The inference server over HTTPS (serve.tls): real TLS clients that trust only the test's CA,
 * mutual TLS with client certificates, and a certificate rotated on disk while it serves.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import {
  httpsRequest,
  issueCertificate,
  linearRegressionModel,
  makeCertificateAuthority,
  revocationList,
  waitFor,
} from '@hearth/testing';
import { pino } from 'pino';
import { createLogger } from '../logger.js';
import { ModelRepository } from './model-repository.js';
import { startOipServer, type OipServer } from './oip-server.js';
import { ServeMetrics } from './serve-metrics.js';
import { ServeTlsError } from './serve-tls.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-oip-tls-'));
const serverCa = makeCertificateAuthority(dir, 'server-ca');
const clientCa = makeCertificateAuthority(dir, 'client-ca');
const strangerCa = makeCertificateAuthority(dir, 'stranger-ca');
const serverCert = issueCertificate(serverCa, dir, 'inference');
const client = issueCertificate(clientCa, dir, 'scoring-service');
const stranger = issueCertificate(strangerCa, dir, 'stranger');
const fingerprint = (file: string) => new X509Certificate(fs.readFileSync(file)).fingerprint256;

const INFER = JSON.stringify({
  inputs: [{ name: 'float_input', datatype: 'FP32', shape: [1, 3], data: [1, 2, 4] }],
});

let repository: ModelRepository;
const servers: OipServer[] = [];
const logger = createLogger('silent');

beforeAll(async () => {
  repository = new ModelRepository();
  const model = path.join(dir, 'linear.onnx');
  fs.writeFileSync(model, linearRegressionModel()); // [1, 2, 4] → 3
  await repository.load('price', '1', model);
});

afterAll(async () => {
  for (const server of servers) await server.close(0);
  await repository?.close({ force: true });
  fs.rmSync(dir, { recursive: true, force: true });
});

async function start(tls: Parameters<typeof startOipServer>[0]['tls'], tlsReloadMs?: number) {
  const server = await startOipServer({
    host: '127.0.0.1',
    port: 0,
    repository,
    metrics: new ServeMetrics(),
    logger,
    tls,
    tlsReloadMs,
  });
  servers.push(server);
  return server;
}

/** A kept-alive mutual-TLS connection spoken to by hand: each request's whole answer, in order. */
async function tlsConnection(port: number, client: { cert: string; key: string }) {
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    ca: fs.readFileSync(serverCa.cert),
    cert: fs.readFileSync(client.cert),
    key: fs.readFileSync(client.key),
  });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  let received = '';
  let waiter: (() => void) | null = null;
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
    waiter?.();
  });
  socket.on('error', () => undefined);
  let ended = false;
  const closed = new Promise<boolean>((resolve) =>
    socket.once('close', () => {
      ended = true;
      waiter?.();
      resolve(true);
    }),
  );
  return {
    socket,
    /** Writes `text` and resolves with the next complete response (headers and content-length body). */
    async request(text: string): Promise<string> {
      socket.write(text);
      for (;;) {
        const end = received.indexOf('\r\n\r\n');
        const length = Number(/content-length: (\d+)/i.exec(received.slice(0, end))?.[1] ?? 0);
        if (end >= 0 && received.length >= end + 4 + length) {
          const response = received.slice(0, end + 4 + length);
          received = received.slice(end + 4 + length);
          return response;
        }
        if (ended)
          throw new Error(`the connection closed before a whole response: ${JSON.stringify(received)}`);
        await new Promise<void>((resolve) => (waiter = resolve));
      }
    },
    closedWithin: (ms: number) =>
      Promise.race([closed, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref())]),
  };
}

/** What a client gets that speaks plain HTTP to the port: a status, or its error's code. */
function plainHttp(url: string): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get(url.replace(/^https:/, 'http:'), { agent: false }, (res) => {
      res.resume();
      resolve(`status ${res.statusCode}`);
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('the inference server with serve.tls', () => {
  it('serves the protocol over HTTPS with the configured certificate, and nothing over plain HTTP', async () => {
    const server = await start({ certFile: serverCert.cert, keyFile: serverCert.key, clientCaFile: null });
    expect(server.url).toBe(`https://127.0.0.1:${server.port}`);

    const live = await httpsRequest(`${server.url}/v2/health/live`, { ca: serverCa.cert });
    expect(live).toMatchObject({ status: 200, serverFingerprint256: fingerprint(serverCert.cert) });
    expect(JSON.parse(live.text)).toEqual({ live: true });
    const answer = await httpsRequest(`${server.url}/v2/models/price/infer`, {
      ca: serverCa.cert,
      body: INFER,
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.text)).toMatchObject({ model_version: '1', outputs: [{ data: [3] }] });

    // A client that does not trust the server's CA refuses it, and plain HTTP gets no answer.
    await expect(httpsRequest(`${server.url}/v2/health/live`, { ca: strangerCa.cert })).rejects.toThrow(
      /unable to verify|self-signed|certificate/i,
    );
    expect(await plainHttp(`${server.url}/v2/health/live`)).toMatch(/^E[A-Z]+$/); // e.g. ECONNRESET
  });

  it('answers only clients whose certificate the client CA issued, and tells the others why', async () => {
    const server = await start({
      certFile: serverCert.cert,
      keyFile: serverCert.key,
      clientCaFile: clientCa.cert,
    });
    const url = `${server.url}/v2/models/price/infer`;

    const trusted = await httpsRequest(url, { ca: serverCa.cert, client, body: INFER });
    expect(trusted.status).toBe(200);
    expect(JSON.parse(trusted.text)).toMatchObject({ outputs: [{ data: [3] }] });

    const message =
      'this inference server answers only clients with a certificate issued by the CA it trusts ' +
      '(mutual TLS); present one';
    for (const presented of [undefined, stranger]) {
      const refused = await httpsRequest(url, { ca: serverCa.cert, client: presented, body: INFER });
      expect(refused.status).toBe(403);
      expect(JSON.parse(refused.text)).toEqual({ error: message });
    }
    // Every endpoint, health and metadata included: they name the models served.
    const metadata = await httpsRequest(`${server.url}/v2/models/price`, { ca: serverCa.cert });
    expect(metadata.status).toBe(403);
    expect(JSON.parse(metadata.text)).toEqual({ error: message });
  });

  it('serves a certificate rotated on disk from the next connection on, without a restart', async () => {
    const rotating = path.join(dir, 'rotating');
    const first = issueCertificate(serverCa, rotating, 'inference');
    const server = await start({ certFile: first.cert, keyFile: first.key, clientCaFile: null }, 50);
    const live = () => httpsRequest(`${server.url}/v2/health/live`, { ca: serverCa.cert });
    const original = fingerprint(first.cert);
    expect((await live()).serverFingerprint256).toBe(original);

    const second = issueCertificate(serverCa, rotating, 'inference'); // same files, new contents
    const rotated = fingerprint(second.cert);
    expect(rotated).not.toBe(original);
    await waitFor(async () => (await live()).serverFingerprint256 === rotated, {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: 'the rotated certificate to be served',
    });
    const answer = await httpsRequest(`${server.url}/v2/models/price/infer`, {
      ca: serverCa.cert,
      body: INFER,
    });
    expect(answer.status).toBe(200);
  });

  it('stops answering connections authorized under a client CA that has been replaced', async () => {
    const rotating = path.join(dir, 'ca-rotation');
    fs.mkdirSync(rotating);
    const oldCa = makeCertificateAuthority(rotating, 'old-ca');
    const newCa = makeCertificateAuthority(rotating, 'new-ca');
    const oldClient = issueCertificate(oldCa, rotating, 'old-client');
    const newClient = issueCertificate(newCa, rotating, 'new-client');
    const caFile = path.join(rotating, 'clients.pem');
    fs.copyFileSync(oldCa.cert, caFile);
    const server = await start(
      { certFile: serverCert.cert, keyFile: serverCert.key, clientCaFile: caFile },
      50,
    );
    const { port } = new URL(server.url);

    // Two kept-alive connections of the old CA's client: one idle, one with a request under way.
    const idle = await tlsConnection(Number(port), oldClient);
    expect(await idle.request('GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
    const busy = await tlsConnection(Number(port), oldClient);
    const head = `POST /v2/models/price/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${INFER.length}\r\n\r\n`;
    busy.socket.write(head + INFER.slice(0, 10));

    fs.copyFileSync(newCa.cert, caFile);
    const url = `${server.url}/v2/models/price/infer`;
    await waitFor(
      async () =>
        (await httpsRequest(url, { ca: serverCa.cert, client: newClient, body: INFER })).status === 200,
      {
        timeoutMs: 10_000,
        intervalMs: 50,
        what: "the new CA's client to be answered",
      },
    );
    expect(await idle.closedWithin(5000)).toBe(true);
    // The request under way was authorized before the change and is answered; nothing after it.
    expect(await busy.request(INFER.slice(10))).toMatch(/^HTTP\/1\.1 200 [\s\S]*"data":\[3\]/);
    const refused = await busy.request(head + INFER);
    expect(refused).toMatch(/^HTTP\/1\.1 421 Misdirected Request\r\n/);
    expect(refused).toContain(
      `{"error":"the server's client CA or revocation list changed since this connection was opened: send the request again on a new connection"}`,
    );
    expect(await busy.closedWithin(5000)).toBe(true);
    // Reconnecting, the old CA's client is refused; the new one's is answered.
    expect((await httpsRequest(url, { ca: serverCa.cert, client: oldClient, body: INFER })).status).toBe(403);
  });

  it('refuses client certificates its revocation list names, from the renewed list on, and says when the list is at fault', async () => {
    const crlDir = path.join(dir, 'crl');
    const ca = makeCertificateAuthority(crlDir, 'clients-ca');
    const kept = issueCertificate(ca, crlDir, 'kept');
    const revoked = issueCertificate(ca, crlDir, 'revoked');
    const crlFile = revocationList(ca, crlDir, 'clients', [revoked]);
    const lines: { level: number; msg: string; reason?: string }[] = [];
    const server = await startOipServer({
      host: '127.0.0.1',
      port: 0,
      repository,
      metrics: new ServeMetrics(),
      logger: pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) }),
      tls: { certFile: serverCert.cert, keyFile: serverCert.key, clientCaFile: ca.cert, crlFile },
      tlsReloadMs: 50,
    });
    servers.push(server);
    const url = `${server.url}/v2/models/price/infer`;
    const status = async (client: { cert: string; key: string }) =>
      (await httpsRequest(url, { ca: serverCa.cert, client, body: INFER })).status;
    expect(await status(kept)).toBe(200);
    expect(await status(revoked)).toBe(403);

    // The list renewed, now naming the other client too: its kept-alive connection is closed.
    const open = await tlsConnection(Number(new URL(server.url).port), kept);
    expect(await open.request('GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
    revocationList(ca, crlDir, 'clients', [revoked, kept]);
    await waitFor(async () => (await status(kept)) === 403, {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: 'the renewed list to be applied',
    });
    expect(await open.closedWithin(5000)).toBe(true);
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);

    // A list past its next update refuses every client: the log says the list is the cause.
    revocationList(ca, crlDir, 'clients', [], 1);
    const expiredWarning = () => lines.find((l) => l.level === 40 && l.reason === 'CRL_HAS_EXPIRED');
    await waitFor(async () => (await status(kept), expiredWarning()), {
      timeoutMs: 10_000,
      intervalMs: 100,
      what: 'a warning that the revocation list expired',
    });
    expect(await status(kept)).toBe(403);
  });

  it('does not start with files that cannot be used, and says which', async () => {
    const stray = issueCertificate(serverCa, path.join(dir, 'stray'), 'stray');
    await expect(
      start({ certFile: serverCert.cert, keyFile: stray.key, clientCaFile: null }),
    ).rejects.toThrow(
      new ServeTlsError(
        `serve.tls.keyFile ${stray.key} is not the private key of the certificate in ${serverCert.cert}`,
      ),
    );
  });
});
