// bench/serve: what the Open Inference Protocol server adds to an inference, against onnxruntime
// called directly in the same process.
//   npm run build && node bench/serve/run.js [--iterations 5000] [--seconds 5] [--connections 4] [--threads N] [--workers N] [--binary] [--tls] [--rows 1,64]
// The model is what the trainer exports (apps/agent/dist/ml/onnx-export.js): 32 float32 features,
// standardised, two relu layers of 64, one sigmoid output; seeded weights. It is loaded twice: as a
// plain InferenceSession (the CPU provider, the serving session's options) and behind the real server
// (ModelRepository + startOipServer on 127.0.0.1, ephemeral port). --threads sets onnxruntime's
// intra-op threads for both (ModelSessionOptions.intraOpThreads); default: onnxruntime's (one per core).
// --workers N (N > 1) serves through the agent's ServeHost as N serve worker processes (the policy's
// serve.workers) instead of in this process: the latency phase then measures one worker (one
// kept-alive connection), the throughput phase all of them (autocannon's connections are spread).
// --tls serves over HTTPS (the policy's serve.tls, a certificate made with openssl for the run), and
// the bare server too, so that "exchange" stays the floor of the same stack; clients keep their
// connections alive, as inference clients do, so this measures TLS on the requests, not handshakes.
// For 1 row and 64 rows:
// 1. Latency, sequential, the three interleaved: raw is `await session.run(feeds)` with a new input
//    Tensor each time; http is one POST /v2/models/{name}/infer on a kept-alive connection
//    (node:http, Agent keepAlive, body prebuilt) until the whole response is read (not parsed);
//    exchange is the same POST to a bare node:http server in this process that reads the body and
//    answers the same response text without doing anything: the floor of Node's HTTP stack, client
//    included. Client and servers share this process's one thread, so the http figure includes the
//    client's send and response parsing, loopback TCP, the server's HTTP parsing, the JSON decode,
//    the tensor, the run, the JSON encode and the metrics.
// 2. Throughput: raw run in a loop (it runs on the main thread, so concurrency adds nothing), against
//    `--connections` concurrent kept-alive connections (to the server, then to the bare one), each
//    sending its next request when the last is answered, for `--seconds` each: first from autocannon
//    in its own process (the server has this process's thread to itself, as it has when its clients
//    are elsewhere; on two cores autocannon takes the other), then from this process (the figure of
//    the earlier sessions: client and server share one thread).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { createLogger } from '../../apps/agent/dist/logger.js';
import { exportOnnx, INPUT_NAME, OUTPUT_NAME } from '../../apps/agent/dist/ml/onnx-export.js';
import { SeededRandom } from '../../apps/agent/dist/ml/seeded-random.js';
import { ModelRepository } from '../../apps/agent/dist/serve/model-repository.js';
import { loadModelSession } from '../../apps/agent/dist/serve/model-session.js';
import { startOipServer } from '../../apps/agent/dist/serve/oip-server.js';
import { ServeHost } from '../../apps/agent/dist/serve/serve-host.js';
import { ServeMetrics } from '../../apps/agent/dist/serve/serve-metrics.js';
import { issueCertificate, makeCertificateAuthority } from '../../libs/testing/dist/tls.js';

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '5000' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '4' },
    threads: { type: 'string' },
    rows: { type: 'string', default: '1,64' },
    workers: { type: 'string', default: '1' },
    // Send the inputs with the binary tensor data extension (raw float32 bytes after a JSON header).
    binary: { type: 'boolean', default: false },
    tls: { type: 'boolean', default: false },
  },
});
const iterations = Number(values.iterations);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const threads = values.threads === undefined ? undefined : Number(values.threads);
const workers = Number(values.workers);

const FEATURES = 32;
const HIDDEN = [64, 64];
const MODEL = 'mlp';
const TARGETS = { addedP50Us: 100, throughputRatio: 0.5 };

const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)];
const us = (ns) => Math.round(Number(ns) / 10) / 100; // ns → µs, 2 decimals
const round = (x, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

// The model: a trained network's shape, seeded weights.
const random = new SeededRandom(42);
const uniform = (n, scale) => Float32Array.from({ length: n }, () => (random.next() * 2 - 1) * scale);
const widths = [FEATURES, ...HIDDEN, 1];
const network = {
  featureCount: FEATURES,
  standardization: {
    mean: uniform(FEATURES, 10),
    std: Float32Array.from(uniform(FEATURES, 1), (s) => 1 + Math.abs(s)),
  },
  layers: widths.slice(1).map((units, i) => ({
    inputs: widths[i],
    units,
    kernel: uniform(widths[i] * units, Math.sqrt(6 / (widths[i] + units))),
    bias: uniform(units, 0.1),
    activation: i === HIDDEN.length ? 'sigmoid' : 'relu',
  })),
  outputScale: null,
};
const bytes = exportOnnx(network, { producerVersion: 'bench' });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-serve-'));
const modelFile = path.join(dir, 'mlp.onnx');
fs.writeFileSync(modelFile, bytes);
// HTTPS: a CA and a server certificate for 127.0.0.1, made for this run.
const ca = values.tls ? makeCertificateAuthority(dir, 'bench-ca') : null;
const certificate = ca ? issueCertificate(ca, dir, 'inference') : null;
const tls = certificate ? { certFile: certificate.cert, keyFile: certificate.key, clientCaFile: null } : null;
const web = tls ? https : http;

// The serving session's options (model-session.ts); the CPU provider for both.
const raw = await ort.InferenceSession.create(bytes, {
  graphOptimizationLevel: 'all',
  logSeverityLevel: 3,
  executionProviders: ['cpu'],
  ...(threads ? { intraOpNumThreads: threads } : {}),
});
// The server: in this process, or the agent's serve workers.
let server;
let closeServer;
if (workers > 1) {
  const host = new ServeHost({
    address: { host: '127.0.0.1', port: 0, tls },
    threads: threads ?? null,
    workers,
    logger: createLogger('warn'),
  });
  const endpoint = await host.start();
  await host.deploy('bench', MODEL, '1', bytes);
  server = { port: Number(new URL(endpoint).port) };
  closeServer = () => host.close();
} else {
  const repository = new ModelRepository({
    loadSession: (file) => loadModelSession(file, { cuda: false, intraOpThreads: threads }),
  });
  await repository.load(MODEL, '1', modelFile);
  server = await startOipServer({
    host: '127.0.0.1',
    port: 0,
    tls,
    repository,
    metrics: new ServeMetrics(),
    logger: createLogger('warn'),
  });
  closeServer = async () => {
    await server.close(1000);
    await repository.close();
  };
}
// The floor: node:http with nothing behind it. It answers `bareAnswer`, set per case.
let bareAnswer = '';
const bareOptions = certificate
  ? { cert: fs.readFileSync(certificate.cert), key: fs.readFileSync(certificate.key) }
  : {};
const bare = web.createServer(bareOptions, (req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(bareAnswer),
    });
    res.end(bareAnswer);
  });
});
await new Promise((resolve) => bare.listen(0, '127.0.0.1', resolve));
const agent = new web.Agent({
  keepAlive: true,
  maxSockets: connections,
  ...(ca ? { ca: fs.readFileSync(ca.cert) } : {}),
});

/** Headers of the requests of the current case (the binary extension's header length). */
let requestHeaders = {};

/** A POST on a kept-alive connection; resolves when the whole response has been read. */
function post(body, port = server.port) {
  return new Promise((resolve, reject) => {
    const req = web.request(
      {
        agent,
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: `/v2/models/${MODEL}/infer`,
        headers: { 'content-type': 'application/json', 'content-length': body.length, ...requestHeaders },
      },
      (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () =>
          res.statusCode === 200
            ? resolve(chunks)
            : reject(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString()}`)),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const cases = [];
try {
  for (const rows of values.rows.split(',').map(Number)) {
    // Feature values as a client would send them from a CSV: 6 significant digits.
    const data = Array.from({ length: rows * FEATURES }, () =>
      Number(((random.next() - 0.5) * 40).toPrecision(6)),
    );
    const input = Float32Array.from(data);
    const feeds = () => ({ [INPUT_NAME]: new ort.Tensor('float32', input, [rows, FEATURES]) });
    const tensor = { name: INPUT_NAME, datatype: 'FP32', shape: [rows, FEATURES] };
    let body;
    if (values.binary) {
      const header = Buffer.from(
        JSON.stringify({ inputs: [{ ...tensor, parameters: { binary_data_size: input.byteLength } }] }),
      );
      body = Buffer.concat([header, Buffer.from(input.buffer, input.byteOffset, input.byteLength)]);
      requestHeaders = { 'inference-header-content-length': header.length };
    } else {
      body = Buffer.from(JSON.stringify({ inputs: [{ ...tensor, data }] }));
    }

    // The server answers what onnxruntime answers.
    const expected = Array.from((await raw.run(feeds()))[OUTPUT_NAME].data);
    bareAnswer = Buffer.concat(await post(body)).toString();
    const got = JSON.parse(bareAnswer).outputs[0].data;
    if (got.length !== expected.length || got.some((v, i) => Math.fround(v) !== expected[i])) {
      throw new Error(`the server's answer differs from onnxruntime's for ${rows} row(s)`);
    }

    // 1. Sequential latency, interleaved, after a warm-up.
    const rawNs = [];
    const httpNs = [];
    const exchangeNs = [];
    for (let i = 0; i < iterations + 500; i++) {
      let t = process.hrtime.bigint();
      await raw.run(feeds());
      const r = process.hrtime.bigint() - t;
      t = process.hrtime.bigint();
      await post(body);
      const h = process.hrtime.bigint() - t;
      t = process.hrtime.bigint();
      await post(body, bare.address().port);
      const e = process.hrtime.bigint() - t;
      if (i >= 500) {
        rawNs.push(Number(r));
        httpNs.push(Number(h));
        exchangeNs.push(Number(e));
      }
    }

    // 2. Throughput.
    const rawRun = await timed(async (end) => {
      let n = 0;
      while (performance.now() < end) {
        await raw.run(feeds());
        n++;
      }
      return n;
    });
    const concurrent = (port) => async (end) => {
      const counts = await Promise.all(
        Array.from({ length: connections }, async () => {
          let n = 0;
          while (performance.now() < end) {
            await post(body, port);
            n++;
          }
          return n;
        }),
      );
      return counts.reduce((a, b) => a + b, 0);
    };
    const bodyFile = path.join(dir, `body-${rows}`);
    fs.writeFileSync(bodyFile, body);
    const httpApart = await autocannon(server.port, bodyFile);
    const exchangeApart = await autocannon(bare.address().port, bodyFile);
    const httpRun = await timed(concurrent(server.port));
    const exchangeRun = await timed(concurrent(bare.address().port));

    const rawP50 = pct(rawNs, 0.5);
    const httpP50 = pct(httpNs, 0.5);
    const ratio = httpApart.perSecond / rawRun.perSecond;
    cases.push({
      rows,
      requestBytes: body.length,
      responseBytes: Buffer.byteLength(bareAnswer),
      latencyUs: {
        raw: { p50: us(rawP50), p99: us(pct(rawNs, 0.99)) },
        http: { p50: us(httpP50), p99: us(pct(httpNs, 0.99)) },
        exchange: { p50: us(pct(exchangeNs, 0.5)), p99: us(pct(exchangeNs, 0.99)) },
        addedP50: us(httpP50 - rawP50),
        // What the server's own work adds beyond a bare HTTP exchange and the run itself.
        serverWorkP50: us(httpP50 - rawP50 - pct(exchangeNs, 0.5)),
      },
      throughput: {
        raw: {
          requestsPerSecond: round(rawRun.perSecond),
          rowsPerSecond: Math.round(rawRun.perSecond * rows),
        },
        // Load from autocannon in its own process.
        http: {
          connections,
          requestsPerSecond: round(httpApart.perSecond),
          rowsPerSecond: Math.round(httpApart.perSecond * rows),
        },
        exchange: { requestsPerSecond: round(exchangeApart.perSecond) },
        ratio: round(ratio, 3),
        exchangeRatio: round(exchangeApart.perSecond / rawRun.perSecond, 3),
        // Load from this process (client and server on one thread).
        inProcess: {
          http: { requestsPerSecond: round(httpRun.perSecond) },
          exchange: { requestsPerSecond: round(exchangeRun.perSecond) },
          ratio: round(httpRun.perSecond / rawRun.perSecond, 3),
        },
      },
      targets: {
        addedP50: us(httpP50 - rawP50) <= TARGETS.addedP50Us ? 'met' : 'missed',
        throughput: ratio >= TARGETS.throughputRatio ? 'met' : 'missed',
      },
    });
  }
} finally {
  agent.destroy();
  bare.close();
  await closeServer();
  await raw.release();
  fs.rmSync(dir, { recursive: true, force: true });
}

/** `--connections` kept-alive connections for `--seconds` from autocannon in its own process. */
async function autocannon(port, bodyFile) {
  await new Promise((r) => setTimeout(r, 100));
  const headers = { 'content-type': 'application/json', ...requestHeaders };
  const stdout = await new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      [
        new URL('./load.js', import.meta.url).pathname,
        `${tls ? 'https' : 'http'}://127.0.0.1:${port}/v2/models/${MODEL}/infer`,
        bodyFile,
        String(connections),
        String(seconds),
        JSON.stringify(headers),
      ],
      { maxBuffer: 1 << 24 },
      (err, out) => (err ? reject(err) : resolve(out)),
    ),
  );
  const report = JSON.parse(stdout);
  if (report.non2xx || report.errors || report.timeouts) {
    throw new Error(
      `autocannon: ${report.non2xx} non-2xx, ${report.errors} errors, ${report.timeouts} timeouts`,
    );
  }
  return { requests: report.requests.total, perSecond: report.requests.total / report.duration };
}

async function timed(loop) {
  await new Promise((r) => setTimeout(r, 100)); // let the last phase's sockets and GC settle
  const t0 = performance.now();
  const n = await loop(t0 + seconds * 1000);
  return { requests: n, perSecond: n / ((performance.now() - t0) / 1000) };
}

const result = {
  date: new Date().toISOString(),
  machine: `${os.cpus().length} cores (${os.cpus()[0].model}), ${Math.round(os.totalmem() / 2 ** 30)} GB; Node ${process.version}; onnxruntime-node ${ort.env.versions.node ?? ''}`,
  // The machine is shared: its 1-minute load average when the run ended.
  loadAverage: round(os.loadavg()[0], 2),
  model: `exportOnnx MLP ${widths.join('→')} (standardise, relu, relu, sigmoid), float32, CPU provider`,
  intraOpThreads: threads ?? 'default',
  serveWorkers: workers,
  transport: tls ? 'HTTPS (kept-alive connections)' : 'HTTP',
  iterations,
  seconds,
  targets: { addedP50Us: `≤ ${TARGETS.addedP50Us}`, throughputRatio: `≥ ${TARGETS.throughputRatio}` },
  cases,
};
console.log(JSON.stringify(result, null, 2));
fs.writeFileSync(
  `bench/serve/results-${result.date.slice(0, 19).replace(/:/g, '')}.json`,
  JSON.stringify(result, null, 2),
);
