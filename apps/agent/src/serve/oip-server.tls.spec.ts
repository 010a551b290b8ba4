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
import {
  httpsRequest,
  issueCertificate,
  linearRegressionModel,
  makeCertificateAuthority,
  waitFor,
} from '@hearth/testing';
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
