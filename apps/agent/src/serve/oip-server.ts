/**
 * The Open Inference Protocol v2 REST API (KServe, Triton, MLServer) over node:http, on the host and
 * port its caller gives:
 *
 *   GET  /v2                                        server metadata
 *   GET  /v2/health/live, /v2/health/ready          health (503 when not ready)
 *   GET  /v2/models/{name}[/versions/{version}]     model metadata
 *   GET  /v2/models/{name}[/versions/{version}]/ready
 *   POST /v2/models/{name}[/versions/{version}]/infer
 *
 * Errors are {"error": "…"}: 400 malformed request (or a JSON response over its limit), 403 no
 * client certificate from the trusted CA (mutual TLS), 421 a connection authorized under a client
 * CA or revocation list since replaced (send again on a new connection), 404 unknown
 * path/model/version, 405 wrong method, 408/431 a request too slow or with headers too large, 413
 * body or tensor over the limit, 414 request target too long, 503 model not ready or too many bytes
 * in flight (with Retry-After), 400 or 500 a failed run (run-failure.ts: the client's values or the server's fault; onnxruntime's
 * message stays in this machine's log, under an error id the answer gives). Request bodies are read
 * only into memory for the one request (oip-body.ts); nothing of them is logged or counted but its
 * size, except that onnxruntime's message for a failed run, logged at debug level, may quote an
 * input value. With `tls`, the server speaks HTTPS (serve-tls.ts) and serves a rotated certificate
 * from the next connection on.
 */
import http from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { errorMessage, type Logger } from '../logger.js';
import { AGENT_VERSION } from '../version.js';
import type { ModelLease, ModelRepository } from './model-repository.js';
import { BinaryReader, splitBinaryBody } from './oip-binary.js';
import { ByteBudget, DECODERS, decode, readBody, tooLarge } from './oip-body.js';
import { DEFAULT_TENSOR_LIMITS, parseInferRequest } from './oip-codec.js';
import { IdleWatch } from './oip-idle.js';
import { parseJsonBody } from './oip-json.js';
import { encodeInferResponseParts, inferBody, jsonBody, writeResponse } from './oip-response.js';
import { LogGate, runFailure, runFailureLog } from './run-failure.js';
import type { MetricsSink } from './serve-metrics.js';
import { DEFAULT_SERVE_LIMITS, type ServeLimitsPolicy, type ServeTlsPolicy } from '../policy/local-policy.js';
import {
  STALE_CLIENT,
  keepServerTlsCurrent,
  loadServeTls,
  secureContextOptions,
  type ServerTlsWatch,
} from './serve-tls.js';
import { ServeError, badRequest, type ServeErrorCode } from './serve.errors.js';

/** Protocol extensions served (named as Triton names them). */
const EXTENSIONS = ['binary_tensor_data'];

export interface OipServerOptions {
  host: string;
  /** 0 picks a free port (see OipServer.port). */
  port: number;
  repository: ModelRepository;
  metrics: MetricsSink;
  logger: Logger;
  /** The largest request body accepted (after decompression); default 32 MiB. */
  maxBodyBytes?: number;
  /**
   * Bytes held at once by requests being answered, their bodies as they arrive and then their
   * responses until the client has taken them; beyond it a request gets 503 and Retry-After.
   * Default: 2 × maxBodyBytes.
   */
  maxInFlightBytes?: number;
  /**
   * The largest JSON response; past it the client is told to ask for binary outputs. A response is
   * one string on this process's heap, about 20 bytes per FP32 value. Default: 4 × maxBodyBytes.
   */
  maxJsonResponseBytes?: number;
  /** The most elements of one input tensor; default 2^25 (DEFAULT_TENSOR_LIMITS). */
  maxElements?: number;
  /** The most elements of one BYTES input tensor; default 2^20 (DEFAULT_TENSOR_LIMITS). */
  maxStringElements?: number;
  /** Connections open at once, beyond which new ones are closed at once; default 1024. */
  maxConnections?: number;
  /**
   * Connections open at once from one client address, beyond which its new ones are closed at
   * once; null or absent: no cap of its own (behind a load balancer every client is one address).
   */
  maxConnectionsPerAddress?: number | null;
  /** The time to receive a request's headers; default 10 s. */
  headersTimeoutMs?: number;
  /** The time to receive a whole request; default 60 s. */
  requestTimeoutMs?: number;
  /** The longest a request body may stop arriving before the request is refused (408); default 10 s. */
  bodyIdleTimeoutMs?: number;
  /** The longest a client may take none of its response before its connection is closed; default 30 s. */
  writeIdleTimeoutMs?: number;
  /** HTTPS with these files (checked at start: a ServeTlsError); null or absent: plain HTTP. */
  tls?: ServeTlsPolicy | null;
  /** How often the TLS files are looked at for a rotation; default DEFAULT_TLS_RELOAD_MS. */
  tlsReloadMs?: number;
}

export interface OipServer {
  readonly port: number;
  /** http://host:port or https://host:port, without a trailing slash. */
  readonly url: string;
  /**
   * Stops taking connections and reports not ready; requests in flight finish, up to graceMs
   * (default 10 s), after which every connection is closed. The repository is the caller's.
   */
  close(graceMs?: number): Promise<void>;
}

/** V8's longest string (2^29 - 24 characters): a JSON response is built as one. */
const MAX_JSON_RESPONSE_BYTES = 2 ** 29 - 24;
/**
 * The longest request target (path and query) taken: routes need a few dozen characters, and a
 * long one cost route matching time on the event loop every other client waits on.
 */
const MAX_TARGET_LENGTH = 2048;
const SERVER_NAME = 'hearth-agent';
const PLATFORM = 'onnxruntime_onnx';

const HTTP_STATUS: Readonly<Record<ServeErrorCode, number>> = {
  BAD_REQUEST: 400,
  PAYLOAD_TOO_LARGE: 413,
  URI_TOO_LONG: 414,
  REQUEST_TIMEOUT: 408,
  FORBIDDEN: 403,
  MISDIRECTED: 421,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  NOT_READY: 503,
  BUSY: 503,
  INPUT_REJECTED: 400,
  INFERENCE_FAILED: 500,
  MODEL_LOAD_FAILED: 500,
  INVALID_OPERATION: 500,
};

type Route =
  | { kind: 'server-metadata' | 'live' | 'ready' }
  | { kind: 'model-metadata' | 'model-ready' | 'infer'; name: string; version: string | undefined };

export async function startOipServer(options: OipServerOptions): Promise<OipServer> {
  const { repository, metrics, logger } = options;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_SERVE_LIMITS.maxBodyBytes;
  const budget = new ByteBudget(options.maxInFlightBytes ?? 2 * maxBodyBytes);
  const maxJsonResponseBytes =
    options.maxJsonResponseBytes ?? Math.min(4 * maxBodyBytes, MAX_JSON_RESPONSE_BYTES);
  const tensorLimits = {
    maxElements: options.maxElements ?? DEFAULT_TENSOR_LIMITS.maxElements,
    maxStringElements: options.maxStringElements ?? DEFAULT_TENSOR_LIMITS.maxStringElements,
  };
  const bodyIdleMs = options.bodyIdleTimeoutMs ?? 10_000;
  const writeIdleMs = options.writeIdleTimeoutMs ?? 30_000;
  // Stalls are looked for every second (more often for the short limits tests use).
  const idleWatch = new IdleWatch(Math.max(50, Math.min(1000, bodyIdleMs / 4, writeIdleMs / 4)));
  const bodyIdle = { watch: idleWatch, ms: bodyIdleMs };
  const writeIdle = { watch: idleWatch, ms: writeIdleMs };
  const send = (res: http.ServerResponse, status: number, body: unknown): void =>
    writeResponse(res, status, jsonBody(JSON.stringify(body)), writeIdle);
  const failureLog = runFailureLog(logger);
  const errorLines = new LogGate(10_000);
  let closing = false;

  const tlsMaterial = options.tls ? loadServeTls(options.tls) : null;
  const clientCertificates = tlsMaterial !== null && tlsMaterial.ca !== null;

  let tlsWatch: ServerTlsWatch | null = null;

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    if (tlsWatch?.staleClient(req.socket as TLSSocket)) {
      res.setHeader('connection', 'close');
      throw new ServeError('MISDIRECTED', STALE_CLIENT);
    }
    if (clientCertificates && !(req.socket as TLSSocket).authorized) {
      res.setHeader('connection', 'close');
      tlsWatch?.refused(req.socket as TLSSocket);
      throw new ServeError(
        'FORBIDDEN',
        'this inference server answers only clients with a certificate issued by the CA it trusts ' +
          '(mutual TLS); present one',
      );
    }
    if ((req.url ?? '').length > MAX_TARGET_LENGTH) {
      throw new ServeError(
        'URI_TOO_LONG',
        `the request target is longer than ${MAX_TARGET_LENGTH} characters`,
      );
    }
    const route = matchRoute(req.url ?? '/');
    if (!route) throw new ServeError('NOT_FOUND', `no such endpoint: ${req.method} ${pathOf(req.url)}`);
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const allowed = route.kind === 'infer' ? 'POST' : 'GET';
    if (method !== allowed) {
      res.setHeader('allow', allowed === 'GET' ? 'GET, HEAD' : 'POST');
      throw new ServeError(
        'METHOD_NOT_ALLOWED',
        `${route.kind === 'infer' ? 'inference' : 'this endpoint'} takes ${allowed}`,
      );
    }
    switch (route.kind) {
      case 'server-metadata':
        return send(res, 200, { name: SERVER_NAME, version: AGENT_VERSION, extensions: EXTENSIONS });
      case 'live':
        return send(res, 200, { live: true });
      case 'ready': {
        const ready = !closing && repository.allReady();
        return send(res, ready ? 200 : 503, { ready });
      }
      case 'model-ready':
        try {
          repository.check(route.name, route.version);
          return send(res, 200, { name: route.name, ready: true });
        } catch (err) {
          if (err instanceof ServeError && err.code === 'NOT_READY') {
            return send(res, 503, { name: route.name, ready: false });
          }
          throw err;
        }
      case 'model-metadata': {
        const lease = repository.acquire(route.name, route.version);
        lease.release();
        const { inputs, outputs } = lease.session;
        return send(res, 200, {
          name: route.name,
          versions: [lease.version],
          platform: PLATFORM,
          inputs,
          outputs,
        });
      }
      case 'infer':
        return infer(req, res, route.name, route.version);
    }
  };

  const infer = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    name: string,
    version: string | undefined,
  ): Promise<void> => {
    const started = performance.now();
    let lease: ModelLease | null = null;
    let status = 500;
    const held = budget.hold();
    // The bytes stay held until this handler is done and the response is taken or its connection
    // gone, whichever is last: a response written is not yet a response sent.
    let holding = 2;
    const letGo = () => {
      if (--holding === 0) held.release();
    };
    res.once('close', letGo);
    try {
      repository.check(name, version); // refuse an unknown or unready model before reading its body
      const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
      if (!DECODERS.has(encoding)) {
        throw badRequest(
          `content-encoding ${encoding.slice(0, 32)} is not supported; send gzip, deflate or identity`,
        );
      }
      if (Number(req.headers['content-length']) > maxBodyBytes) throw tooLarge(maxBodyBytes);
      // Only now, with the request one that will be read, is the client invited to send its body.
      if (/100-continue/i.test(req.headers.expect ?? '')) res.writeContinue();
      const received = await readBody(req, held, maxBodyBytes, bodyIdle);
      const raw = await decode(encoding, received, maxBodyBytes, held);
      const headerLength = req.headers['inference-header-content-length'];
      const split = headerLength === undefined ? null : splitBinaryBody(raw, [headerLength].flat().join(','));
      const body = parseJson(split ? split.json : raw);
      lease = repository.acquire(name, version);
      const request = parseInferRequest(
        body,
        lease.session,
        split ? new BinaryReader(split.binary) : undefined,
        tensorLimits,
      );
      let outputs;
      try {
        outputs = await lease.session.run(request.feeds, request.outputNames);
      } catch (err) {
        throw runFailure(err, name, failureLog);
      }
      const response = encodeInferResponseParts(
        {
          modelName: name,
          modelVersion: lease.version,
          id: request.id,
          outputs: request.outputNames.map((output) => ({ name: output, tensor: outputs[output] })),
        },
        request.binaryOutputs,
        maxJsonResponseBytes,
      );
      const answer = inferBody(response.json, response.binary);
      held.grow(held.bytes + answer.size);
      status = 200;
      writeResponse(res, 200, answer, writeIdle);
    } catch (err) {
      status = sendError(res, err);
    } finally {
      letGo();
      lease?.release();
      const ms = performance.now() - started;
      const served = lease?.version ?? targetVersion(name, version);
      if (served !== undefined) metrics.record(name, served, ms, status);
      else metrics.recordUnrouted();
      logger.debug({ model: name, version: served, status, ms: Math.round(ms * 10) / 10 }, 'inference');
    }
  };

  /** The version a request that got no lease was for: a served or loading one, else undefined. */
  const targetVersion = (name: string, version: string | undefined): string | undefined =>
    version === undefined
      ? repository.get(name)?.version
      : repository.list().find((m) => m.name === name && m.version === version)?.version;

  const sendError = (res: http.ServerResponse, err: unknown): number => {
    if (err instanceof ServeError) {
      const status = HTTP_STATUS[err.code];
      // The rest of a body over the limit (or stalled) may still be arriving: close rather than read it.
      if (err.code === 'PAYLOAD_TOO_LARGE' || err.code === 'BUSY' || err.code === 'REQUEST_TIMEOUT') {
        res.setHeader('connection', 'close');
      }
      if (err.code === 'BUSY') res.setHeader('retry-after', '1');
      // Clients can cause 503s by the thousand (BUSY): one line per code every 10 s. A failed run
      // was logged with its cause (run-failure.ts).
      if (status >= 500 && err.code !== 'INFERENCE_FAILED') {
        const count = errorLines.pass(err.code);
        if (count > 0) logger.warn({ code: err.code, count, err: err.message }, 'inference server error');
      }
      send(res, status, { error: err.message });
      return status;
    }
    const id = randomUUID();
    logger.error({ errorId: id, err: errorMessage(err) }, 'unexpected inference server error');
    send(res, 500, { error: `internal error (id ${id})` });
    return 500;
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res).catch((err: unknown) => sendError(res, err));
  };
  // Node's defaults held a half-sent request for 60 s (headers) to 300 s (body), checked every 30 s,
  // with no cap on connections: cheap for a client to hold thousands, each a file descriptor of the
  // agent's own process.
  const httpOptions: http.ServerOptions = {
    headersTimeout: options.headersTimeoutMs ?? 10_000,
    requestTimeout: options.requestTimeoutMs ?? 60_000,
    connectionsCheckingInterval: 1_000,
  };
  const server: http.Server = tlsMaterial
    ? https.createServer(
        {
          ...secureContextOptions(tlsMaterial),
          ...httpOptions,
          handshakeTimeout: httpOptions.headersTimeout,
        },
        onRequest,
      )
    : http.createServer(httpOptions, onRequest);
  server.maxConnections = options.maxConnections ?? DEFAULT_SERVE_LIMITS.maxConnections;
  const perAddress = options.maxConnectionsPerAddress ?? null;
  if (perAddress !== null) capConnectionsPerAddress(server, perAddress);
  // Expect: 100-continue is answered by infer once it will read the body, not by Node before the
  // request is looked at (a body over the limit was invited, then refused).
  server.on('checkContinue', onRequest);
  // A request node:http could not parse: answered as Node's own handler would (the status by the
  // parser's error, nothing written over a response already started), with the protocol's body.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && !inFlight?.headersSent) {
      const [status, reason, message] =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'Request Header Fields Too Large', 'the request line or headers are too large']
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? [408, 'Request Timeout', 'the request took too long to arrive']
            : [400, 'Bad Request', 'the request is not valid HTTP/1.1'];
      const body = JSON.stringify({ error: message });
      socket.end(
        `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    } else socket.destroy(err);
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `the inference server cannot listen on ${options.host}:${options.port}: ${err.code ?? err.message}`,
        ),
      );
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  logger.info(
    {
      host: options.host,
      port,
      tls: tlsMaterial ? { certificate: tlsMaterial.certificate, clientCertificates } : null,
    },
    'inference server listening (Open Inference Protocol v2)',
  );
  tlsWatch = options.tls
    ? keepServerTlsCurrent(server as https.Server, options.tls, {
        where: 'serve.tls',
        what: 'inference server',
        logger,
        ca: tlsMaterial?.ca ?? null,
        crl: tlsMaterial?.crl ?? null,
        intervalMs: options.tlsReloadMs,
      })
    : null;

  return {
    port,
    url: `${tlsMaterial ? 'https' : 'http'}://${host}:${port}`,
    close: async (graceMs = 10_000) => {
      closing = true;
      tlsWatch?.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const force = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(force);
      idleWatch.close();
    },
  };
}

/**
 * Closes a new connection at once when its address already holds `max`: so that one client cannot
 * take every connection the server allows (maxConnections) from the others.
 */
function capConnectionsPerAddress(server: http.Server, max: number): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const count = open.get(address) ?? 0;
    if (count >= max) {
      socket.destroy();
      return;
    }
    open.set(address, count + 1);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
  });
}

/** The local policy's serve.limits as server options (absent: the server's defaults). */
export function limitOptions(limits: ServeLimitsPolicy | undefined): Partial<OipServerOptions> {
  if (!limits) return {};
  return {
    maxBodyBytes: limits.maxBodyBytes,
    maxInFlightBytes: limits.maxInFlightBytes ?? undefined,
    maxElements: limits.maxElements,
    maxStringElements: limits.maxStringElements,
    maxConnections: limits.maxConnections,
    maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
  };
}

/** The route of a request path; null for a path outside the protocol. */
export function matchRoute(url: string): Route | null {
  const parts = withoutTrailingSlashes(pathOf(url, Infinity)).split('/').slice(1);
  let segments: string[];
  try {
    segments = parts.map((p) => decodeURIComponent(p));
  } catch {
    return null;
  }
  if (segments[0] !== 'v2') return null;
  const [, a, b, c, d, e] = segments;
  switch (segments.length) {
    case 1:
      return { kind: 'server-metadata' };
    case 3:
      if (a === 'health' && (b === 'live' || b === 'ready')) return { kind: b };
      if (a === 'models') return { kind: 'model-metadata', name: b, version: undefined };
      return null;
    case 4:
      if (a !== 'models') return null;
      if (c === 'ready') return { kind: 'model-ready', name: b, version: undefined };
      if (c === 'infer') return { kind: 'infer', name: b, version: undefined };
      return null;
    case 5:
      if (a === 'models' && c === 'versions') return { kind: 'model-metadata', name: b, version: d };
      return null;
    case 6:
      if (a !== 'models' || c !== 'versions') return null;
      if (e === 'ready') return { kind: 'model-ready', name: b, version: d };
      if (e === 'infer') return { kind: 'infer', name: b, version: d };
      return null;
    default:
      return null;
  }
}

/**
 * The path without its trailing slashes. A loop, not /\/+$/: that regex tries every run of slashes
 * to the end, so its time grows with the square of their number, and one 16 KB path of slashes
 * held the event loop for half a second.
 */
function withoutTrailingSlashes(path: string): string {
  let end = path.length;
  while (end > 0 && path.charCodeAt(end - 1) === 0x2f) end--;
  return path.slice(0, end);
}

/** The path of a request target, in origin form or absolute form (RFC 9112 §3.2), cut for messages. */
function pathOf(url: string | undefined, max = 256): string {
  const path = (url ?? '/').split('?')[0];
  const absolute = /^https?:\/\/[^/]*/i.exec(path);
  return (absolute ? path.slice(absolute[0].length) || '/' : path).slice(0, max);
}

function parseJson(body: Buffer): unknown {
  try {
    return parseJsonBody(body);
  } catch (err) {
    if (err instanceof ServeError) throw err;
    // V8's message quotes the body: say only what is wrong.
    throw badRequest(body.length === 0 ? 'the request body is empty' : 'the request body is not valid JSON');
  }
}
