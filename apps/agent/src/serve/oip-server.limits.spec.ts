/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 *
 * The server against clients that do not play along: long targets, uploads that announce much and
 * send little or stall, responses never read, oversized tensors and JSON, echoed input, too many
 * connections. Real servers with small limits and short timeouts, real onnxruntime sessions, raw
 * sockets where a client must misbehave.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { identityModel, linearRegressionModel, waitFor } from '@hearth/testing';
import { createLogger } from '../logger.js';
import { ModelRepository } from './model-repository.js';
import { startOipServer, type OipServer, type OipServerOptions } from './oip-server.js';
import { ServeMetrics } from './serve-metrics.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-oip-limits-'));
const file = (name: string, bytes: Uint8Array) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
};

const MAX_BODY = 64 * 1024;
const BODY_IDLE_MS = 500;
const WRITE_IDLE_MS = 1000;
let repository: ModelRepository;
/** Small limits: 64 KiB bodies (a 128 KiB budget), 128 KiB of JSON, 20,000 elements (100 BYTES). */
let server: OipServer;
/** Its uploads may stall for BODY_IDLE_MS. */
let impatient: OipServer;
const servers: OipServer[] = [];

const start = async (options: Partial<OipServerOptions>) => {
  const started = await startOipServer({
    host: '127.0.0.1',
    port: 0,
    repository,
    metrics: new ServeMetrics(),
    logger: createLogger('silent'),
    ...options,
  });
  servers.push(started);
  return started;
};

beforeAll(async () => {
  repository = new ModelRepository();
  await Promise.all([
    repository.load('linear', '1', file('linear.onnx', linearRegressionModel())),
    repository.load(
      'wide',
      '1',
      file('wide.onnx', identityModel([{ name: 'x', type: 'float32', shape: ['n'] }])),
    ),
    repository.load(
      'strings',
      '1',
      file('strings.onnx', identityModel([{ name: 'text', type: 'string', shape: ['n'] }])),
    ),
  ]);
  server = await start({
    maxBodyBytes: MAX_BODY,
    maxJsonResponseBytes: 128 * 1024,
    maxElements: 20_000,
    maxStringElements: 100,
    writeIdleTimeoutMs: WRITE_IDLE_MS,
  });
  impatient = await start({ maxBodyBytes: MAX_BODY, bodyIdleTimeoutMs: BODY_IDLE_MS });
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close(500)));
  await repository?.close({ force: true });
  fs.rmSync(dir, { recursive: true, force: true });
});

async function call(target: OipServer, method: string, urlPath: string, body?: unknown) {
  const res = await fetch(`${target.url}${urlPath}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Record<string, unknown>, headers: res.headers };
}

const linear = { inputs: [{ name: 'float_input', shape: [1, 3], datatype: 'FP32', data: [1, 2, 4] }] };
const inferLinear = (target = server) => call(target, 'POST', '/v2/models/linear/infer', linear);

/** A binary-extension request (oip-binary.ts) for the `wide` model: its JSON header, then `data`. */
function wideRequest(data: Buffer, parameters: Record<string, unknown> = {}): Buffer {
  const header = Buffer.from(
    JSON.stringify({
      parameters,
      inputs: [
        {
          name: 'x',
          shape: [data.length / 4],
          datatype: 'FP32',
          parameters: { binary_data_size: data.length },
        },
      ],
    }),
  );
  return Buffer.concat([
    Buffer.from(
      `POST /v2/models/wide/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n` +
        `inference-header-content-length: ${header.length}\r\ncontent-length: ${header.length + data.length}\r\n` +
        'connection: close\r\n\r\n',
    ),
    header,
    data,
  ]);
}

/** A raw connection to a server, collecting what it answers. */
interface Raw {
  readonly socket: net.Socket;
  /** What has arrived so far, as latin1 text. */
  text(): string;
  /** Resolves when something has arrived. */
  readonly answered: Promise<void>;
  /** True once the server has closed the connection, or false if `ms` passed first. */
  closedWithin(ms: number): Promise<boolean>;
}

async function connect(target: OipServer, localAddress?: string): Promise<Raw> {
  const { hostname, port } = new URL(target.url);
  const socket = net.connect({ port: Number(port), host: hostname, localAddress });
  socket.on('error', () => undefined); // a connection the server cuts
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  let text = '';
  let answer: () => void = () => undefined;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  socket.on('data', (data: Buffer) => {
    text += data.toString('latin1');
    answer();
  });
  const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
  return {
    socket,
    text: () => text,
    answered,
    closedWithin: (ms) =>
      Promise.race([closed, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref())]),
  };
}

describe('OIP v2 server limits: request targets', () => {
  it('answers a 16 KB path of slashes with 414 and the protocol body', async () => {
    const raw = await connect(server);
    raw.socket.write(`GET /v2${'/'.repeat(16_000)} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    expect(await raw.closedWithin(5000)).toBe(true);
    expect(raw.text()).toMatch(
      /^HTTP\/1\.1 414 URI Too Long\r\n[\s\S]*\r\n\r\n\{"error":"the request target is longer than 2048 characters"\}$/,
    );
    // Trailing slashes below the limit are still trimmed.
    expect((await call(server, 'GET', `/v2/health/live${'/'.repeat(1000)}`)).status).toBe(200);
  });
});

describe('OIP v2 server limits: uploads', () => {
  it('holds only the bytes that arrived: uploads that announce much and send little block no one', async () => {
    const announcers = await Promise.all([0, 1].map(() => connect(server)));
    for (const raw of announcers) {
      raw.socket.write(
        `POST /v2/models/linear/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${MAX_BODY}\r\n\r\n{"inputs":`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(await inferLinear()).toMatchObject({ status: 200 });
    for (const raw of announcers) raw.socket.destroy();
  });

  it('413, not 503, for a body announced over the limit while other uploads hold the budget', async () => {
    // Two uploads that sent 63 KiB of their 64 KiB hold 126 KiB of the 128 KiB budget.
    const holders = await Promise.all([0, 1].map(() => connect(server)));
    for (const raw of holders) {
      raw.socket.write(
        `POST /v2/models/linear/infer HTTP/1.1\r\nhost: x\r\ncontent-length: ${MAX_BODY}\r\n\r\n${' '.repeat(MAX_BODY - 1024)}`,
      );
    }
    const padded = { ...linear, pad: ' '.repeat(4096) };
    await waitFor(
      async () => (await call(server, 'POST', '/v2/models/linear/infer', padded)).status === 503,
      {
        what: 'the uploads to hold the budget',
      },
    );
    const res = await fetch(`${server.url}/v2/models/linear/infer`, {
      method: 'POST',
      body: ' '.repeat(MAX_BODY + 1),
    });
    expect({ status: res.status, body: await res.json() }).toEqual({
      status: 413,
      body: { error: `the request body is larger than the ${MAX_BODY}-byte limit` },
    });
    for (const raw of holders) raw.socket.destroy();
  });

  it('cuts an upload that stalls with 408 after the idle time, and frees what it held', async () => {
    const stalled = await connect(impatient);
    stalled.socket.write(
      `POST /v2/models/linear/infer HTTP/1.1\r\nhost: x\r\ncontent-length: ${MAX_BODY}\r\n\r\n${' '.repeat(MAX_BODY - 1024)}`,
    );
    expect(await stalled.closedWithin(BODY_IDLE_MS + 5000)).toBe(true);
    expect(stalled.text()).toMatch(
      /^HTTP\/1\.1 408 Request Timeout\r\n[\s\S]*\r\n\r\n\{"error":"the request body stopped arriving for 0\.5 s"\}$/,
    );
    expect((await inferLinear(impatient)).status).toBe(200);
  });

  it('does not invite a body it will refuse: Expect: 100-continue gets 413 without 100 Continue', async () => {
    const raw = await connect(server);
    raw.socket.write(
      'POST /v2/models/linear/infer HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 999999999\r\n\r\n',
    );
    await raw.answered;
    expect(raw.text()).toMatch(/^HTTP\/1\.1 413 /);
    raw.socket.destroy();

    const body = JSON.stringify(linear);
    const accepted = await connect(server);
    accepted.socket.write(
      `POST /v2/models/linear/infer HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\nconnection: close\r\ncontent-length: ${body.length}\r\n\r\n`,
    );
    await accepted.answered;
    expect(accepted.text()).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    accepted.socket.write(body);
    expect(await accepted.closedWithin(5000)).toBe(true);
    expect(accepted.text()).toMatch(/HTTP\/1\.1 200 OK\r\n[\s\S]*"data":\[3\]/);
  });
});

describe('OIP v2 server limits: responses', () => {
  it('keeps an unread response in the budget, and closes its connection after the write idle time', async () => {
    // An 8 MiB answer: the kernel's socket buffers take about half, the rest stays in the server.
    const big = await start({
      maxBodyBytes: 9 * 1024 * 1024,
      maxInFlightBytes: 17 * 1024 * 1024,
      writeIdleTimeoutMs: WRITE_IDLE_MS,
    });
    const request = wideRequest(Buffer.alloc(8 * 1024 * 1024), { binary_data_output: true });
    const reader = await connect(big);
    reader.socket.write(request);
    await reader.answered;
    reader.socket.pause(); // it has the status line, and takes nothing more
    expect(reader.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    // Its 8 MiB request and 8 MiB response stay held: a 1 MiB request does not fit the 17 MiB budget.
    const other = { ...linear, padding: ' '.repeat(1024 * 1024) };
    const refused = await call(big, 'POST', '/v2/models/linear/infer', other);
    expect(refused).toMatchObject({
      status: 503,
      body: { error: 'the server is busy with other large requests; retry in a moment (see Retry-After)' },
    });
    expect(refused.headers.get('retry-after')).toBe('1');
    // After the write idle time the server drops the connection, and with it what it held.
    await waitFor(async () => (await call(big, 'POST', '/v2/models/linear/infer', other)).status === 200, {
      timeoutMs: WRITE_IDLE_MS + 10_000,
      what: 'the unread response to be dropped',
    });
    reader.socket.resume(); // a paused socket reads nothing, not even its end
    expect(await reader.closedWithin(5000)).toBe(true);
    expect(reader.text().length).toBeLessThan(8 * 1024 * 1024);
  });

  it('refuses a JSON response over its limit, pointing to binary outputs; binary is answered', async () => {
    // 15,000 FP32 values of about 18 characters each: ~270 KB of JSON for a 60 KB request.
    const values = Float32Array.from({ length: 15_000 }, (_, i) => i + 0.1);
    const data = Buffer.from(values.buffer);
    const send = async (parameters: Record<string, unknown>) => {
      const raw = await connect(server);
      raw.socket.end(wideRequest(data, parameters));
      await raw.closedWithin(5000);
      return raw.text();
    };
    expect(await send({})).toMatch(
      /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*\{"error":"the response would take more than 131072 bytes of JSON; ask for the outputs as binary data \(the binary_tensor_data extension: \\"parameters\\": \{\\"binary_data_output\\": true\}\)"\}$/,
    );
    const binary = await send({ binary_data_output: true });
    expect(binary).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(Buffer.from(binary, 'latin1').subarray(-data.length)).toEqual(data);
  });

  it('closes connections past maxConnectionsPerAddress from one address, not from another', async () => {
    const capped = await start({ maxConnectionsPerAddress: 2 });
    const open = await Promise.all([0, 1].map(() => connect(capped)));
    const third = await connect(capped);
    expect(await third.closedWithin(5000)).toBe(true);
    expect(third.text()).toBe('');
    // Another address on the loopback network is not held back by the first one's connections.
    const other = await connect(capped, '127.0.0.2');
    const body = JSON.stringify(linear);
    other.socket.end(
      `POST /v2/models/linear/infer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n` +
        `content-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    );
    expect(await other.closedWithin(5000)).toBe(true);
    expect(other.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    open[0].socket.destroy();
    expect(await waitFor(() => inferLinear(capped).then((r) => r.status === 200))).toBe(true);
    open[1].socket.destroy();
  });

  it('closes connections past maxConnections at once', async () => {
    const capped = await start({ maxConnections: 2 });
    const open = await Promise.all([0, 1].map(() => connect(capped)));
    const third = await connect(capped);
    expect(await third.closedWithin(5000)).toBe(true);
    expect(third.text()).toBe('');
    open[0].socket.destroy();
    // Once the server has seen that one go, there is room again.
    expect(await waitFor(() => inferLinear(capped).then((r) => r.status === 200))).toBe(true);
    open[1].socket.destroy();
  });
});

describe('OIP v2 server limits: tensors', () => {
  const strings = (count: number) => ({
    inputs: [
      { name: 'text', shape: [count], datatype: 'BYTES', data: Array.from({ length: count }, () => 'a') },
    ],
  });

  it('413 for a tensor with more elements than the server takes, checked from its shape', async () => {
    expect((await call(server, 'POST', '/v2/models/strings/infer', strings(100))).status).toBe(200);
    expect(await call(server, 'POST', '/v2/models/strings/infer', strings(101))).toMatchObject({
      status: 413,
      body: {
        error: "input 'text': shape [101] holds 101 elements; this server takes at most 100 per BYTES tensor",
      },
    });
    // Binary: refused before a byte of the section is read.
    const raw = await connect(server);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 'text', shape: [5000], datatype: 'BYTES', parameters: { binary_data_size: 20_000 } },
        ],
      }),
    );
    raw.socket.end(
      Buffer.concat([
        Buffer.from(
          `POST /v2/models/strings/infer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n` +
            `inference-header-content-length: ${header.length}\r\ncontent-length: ${header.length + 20_000}\r\n\r\n`,
        ),
        header,
        Buffer.alloc(20_000),
      ]),
    );
    await raw.closedWithin(5000);
    expect(raw.text()).toContain(
      '{"error":"input \'text\': shape [5000] holds 5000 elements; this server takes at most 100 per BYTES tensor"}',
    );
    const wide = await call(server, 'POST', '/v2/models/wide/infer', {
      inputs: [{ name: 'x', shape: [20_001], datatype: 'FP32', data: new Array(20_001).fill(0) }],
    });
    expect(wide).toMatchObject({
      status: 413,
      body: {
        error: "input 'x': shape [20001] holds 20001 elements; this server takes at most 20000 per tensor",
      },
    });
  });
});

describe('OIP v2 server limits: error bodies', () => {
  it('quotes at most 128 characters of a model name or version, and 8 dimensions of a shape', async () => {
    const long = 'm'.repeat(1000);
    expect(await call(server, 'GET', `/v2/models/${long}`)).toMatchObject({
      status: 404,
      body: { error: `model '${'m'.repeat(128)}…' is not served here` },
    });
    expect(await call(server, 'GET', `/v2/models/linear/versions/${'9'.repeat(1000)}`)).toMatchObject({
      status: 404,
      body: { error: `model 'linear' has no version '${'9'.repeat(128)}…' (serving '1')` },
    });
    const reply = await call(server, 'POST', '/v2/models/linear/infer', {
      inputs: [{ name: 'float_input', shape: new Array(64).fill(1), datatype: 'FP32', data: [1] }],
    });
    expect(reply).toMatchObject({
      status: 400,
      body: {
        error: "input 'float_input': shape [1,1,1,1,1,1,1,1,…] (64 dims) does not match the model's [-1,3]",
      },
    });
    // Longer shapes are refused by their rank, before they are quoted (oip-server.values.spec.ts).
  });
});
