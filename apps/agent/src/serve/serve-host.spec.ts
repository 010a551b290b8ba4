/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 *
 * The agent's inference server and its deployments, over real HTTP and real sessions.
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { issueCertificate, linearRegressionModel, makeCertificateAuthority } from '@hearth/testing';
import { createLogger } from '../logger.js';
import { DEFAULT_SERVE_LIMITS } from '../policy/local-policy.js';
import { ServeHost, endpointFor } from './serve-host.js';
import { ServeTlsError } from './serve-tls.js';

const logger = createLogger('silent');
const v1 = linearRegressionModel(); // [1, 2, 4] → 3
const v2 = linearRegressionModel({ intercept: 101 }); // [1, 2, 4] → 103

const hosts: ServeHost[] = [];
afterAll(async () => {
  for (const host of hosts) await host.close({ force: true });
});

function serveHost(port = 0, threads: number | null = null): ServeHost {
  const host = new ServeHost({ address: { host: '127.0.0.1', port }, threads, logger });
  hosts.push(host);
  return host;
}

async function infer(
  base: string,
  name: string,
): Promise<{ status: number; body: { outputs?: { data: number[] }[]; model_version?: string } }> {
  const res = await fetch(`${base}/v2/models/${name}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      inputs: [{ name: 'float_input', datatype: 'FP32', shape: [1, 3], data: [1, 2, 4] }],
    }),
  });
  return { status: res.status, body: (await res.json()) as never };
}

const status = async (url: string) => (await fetch(url)).status;

describe('endpointFor', () => {
  it("names the listening host, or this machine's name when it listens on every address", () => {
    expect(endpointFor('127.0.0.1', 8600)).toBe('http://127.0.0.1:8600');
    expect(endpointFor('serve.corp.example', 80)).toBe('http://serve.corp.example:80');
    expect(endpointFor('0.0.0.0', 8600)).toBe(`http://${os.hostname()}:8600`);
    expect(endpointFor('::', 8600)).toBe(`http://${os.hostname()}:8600`);
    expect(endpointFor('::1', 8600)).toBe('http://[::1]:8600');
    expect(endpointFor('127.0.0.1', 8600, true)).toBe('https://127.0.0.1:8600');
    expect(endpointFor('0.0.0.0', 8600, true)).toBe(`https://${os.hostname()}:8600`);
  });
});

describe('ServeHost', () => {
  it("gives each model the configured number of onnxruntime threads (the policy's serve.threads)", async () => {
    // onnxruntime's intra-op pool for N threads is N - 1 OS threads next to the caller's.
    const osThreads = () => fs.readdirSync('/proc/self/task').length;
    const host = serveHost(0, 4);
    await host.start();
    await host.undeploy(await host.deploy('warm', 'warm', '1', v1)); // onnxruntime's one-time threads
    const before = osThreads();
    const four = await host.deploy('t4', 'four', '1', v1);
    expect(osThreads() - before).toBe(3);
    await host.undeploy(four);
    expect(osThreads()).toBe(before);

    const one = serveHost(0, 1);
    await one.start();
    const single = await one.deploy('t1', 'single', '1', v1);
    expect(osThreads() - before).toBe(0);
    await one.undeploy(single);
  });

  it('starts one server on first use and serves a deployment on it', async () => {
    const host = serveHost();
    const endpoint = await host.start();
    expect(await host.start()).toBe(endpoint);
    expect(endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const deployment = await host.deploy('a1', 'churn', '1', v1);
    expect(deployment).toMatchObject({ name: 'churn', version: '1', executionProvider: 'cpu' });
    const answer = await infer(endpoint, 'churn');
    expect(answer).toMatchObject({ status: 200, body: { model_version: '1', outputs: [{ data: [3] }] } });
    expect(host.metricsOf(deployment)).toMatchObject({ windowSeconds: 60, requests: 1, errors: 0 });
    expect(host.metricsOf(deployment).p50Ms).toBeGreaterThan(0);
    await host.undeploy(deployment);
    expect(await status(`${endpoint}/v2/models/churn/ready`)).toBe(404);
  });

  it("applies the policy's serve.limits to the requests it answers", async () => {
    const host = new ServeHost({
      address: {
        host: '127.0.0.1',
        port: 0,
        limits: { ...DEFAULT_SERVE_LIMITS, maxBodyBytes: 4096, maxElements: 30 },
      },
      logger,
    });
    hosts.push(host);
    const endpoint = await host.start();
    await host.deploy('a1', 'churn', '1', v1);
    const post = async (rows: number, padding = 0) => {
      const res = await fetch(`${endpoint}/v2/models/churn/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          id: 'x'.repeat(padding),
          inputs: [
            { name: 'float_input', datatype: 'FP32', shape: [rows, 3], data: new Array(rows * 3).fill(1) },
          ],
        }),
      });
      return { status: res.status, body: (await res.json()) as { error?: string } };
    };
    expect((await post(10)).status).toBe(200); // 30 elements
    expect(await post(11)).toEqual({
      status: 413,
      body: {
        error: "input 'float_input': shape [11,3] holds 33 elements; this server takes at most 30 per tensor",
      },
    });
    expect((await post(1, 5000)).status).toBe(413); // a body over 4 KiB
  });

  it('replaces a deployment with a newer one of the same name, whose undeploy alone unloads it', async () => {
    const host = serveHost();
    const endpoint = await host.start();
    const first = await host.deploy('a1', 'price', '1', v1);
    const second = await host.deploy('a2', 'price', '2', v2);
    expect(await first.replaced).toBe('2');
    expect((await infer(endpoint, 'price')).body).toMatchObject({
      model_version: '2',
      outputs: [{ data: [103] }],
    });
    await host.undeploy(first); // the replaced one: a no-op
    expect(await status(`${endpoint}/v2/models/price/ready`)).toBe(200);
    await host.undeploy(second);
    expect(await status(`${endpoint}/v2/models/price/ready`)).toBe(404);
  });

  it('keeps the served version when a replacement fails to load, and leaves no failed first load behind', async () => {
    const host = serveHost();
    const endpoint = await host.start();
    const first = await host.deploy('a1', 'kept', '1', v1);
    await expect(host.deploy('a2', 'kept', '2', Uint8Array.from([8, 1, 2, 3]))).rejects.toThrow(
      /onnxruntime cannot load the model/,
    );
    expect((await infer(endpoint, 'kept')).body).toMatchObject({ model_version: '1' });
    let replaced = false;
    void first.replaced.then(() => (replaced = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(replaced).toBe(false);

    await expect(host.deploy('a3', 'broken', '1', Uint8Array.from([8, 1, 2, 3]))).rejects.toThrow();
    expect(await status(`${endpoint}/v2/models/broken/ready`)).toBe(404);
    expect(await status(`${endpoint}/v2/health/ready`)).toBe(200);
  });

  it('says why it cannot listen, and tries again on the next start', async () => {
    const blocker = http.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as AddressInfo;
    const host = serveHost(port);
    await expect(host.start()).rejects.toThrow(
      `the inference server cannot listen on 127.0.0.1:${port}: EADDRINUSE`,
    );
    await new Promise((resolve) => blocker.close(resolve));
    expect(await host.start()).toBe(`http://127.0.0.1:${port}`);
  });
});

describe('ServeHost with serve.tls', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-serve-host-tls-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A host on every address, and the messages it logs. */
  function capturedHost(tls: { certFile: string; keyFile: string; clientCaFile: null } | null) {
    const lines: { level: number; msg: string }[] = [];
    const captured = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const host = new ServeHost({ address: { host: '0.0.0.0', port: 0, tls }, logger: captured });
    hosts.push(host);
    return { host, warnings: () => lines.filter((l) => l.level === 40).map((l) => l.msg) };
  }

  it('reports an https endpoint, and warns when it would serve plain HTTP on a network address', async () => {
    const ca = makeCertificateAuthority(dir, 'ca');
    const cert = issueCertificate(ca, dir, 'inference');
    const secure = capturedHost({ certFile: cert.cert, keyFile: cert.key, clientCaFile: null });
    expect(await secure.host.start()).toMatch(new RegExp(`^https://${os.hostname()}:\\d+$`));
    expect(secure.warnings()).toEqual([]);

    const plain = capturedHost(null);
    expect(await plain.host.start()).toMatch(/^http:\/\//);
    expect(plain.warnings()).toEqual([
      'the inference server speaks plain HTTP on a network address: inference requests and responses ' +
        'cross the network unencrypted; set serve.tls in the local policy',
    ]);
  });

  it('does not start with TLS files that cannot be used, and says which', async () => {
    const missing = path.join(dir, 'missing.crt');
    const { host } = capturedHost({ certFile: missing, keyFile: missing, clientCaFile: null });
    await expect(host.start()).rejects.toThrow(
      new ServeTlsError(`serve.tls.certFile ${missing} does not exist`),
    );
  });
});
