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
 * Errors are {"error": "…"}: 400 malformed request, 403 no client certificate from the trusted CA
 * (mutual TLS), 404 unknown path/model/version, 405 wrong method, 408/431 a request too slow or
 * with headers too large, 413 body over the limit, 503 model not ready or too many request bytes
 * in flight (with Retry-After), 500 inference failure. Bodies may be gzip or deflate encoded, as
 * Triton's clients can send them. Request bodies are read only into memory for the one request;
 * nothing of them is logged or counted but its size, except that onnxruntime's own message for a
 * failed run (logged on this machine only) may quote an input value. With `tls`, the server speaks HTTPS
 * (serve-tls.ts) and serves a rotated certificate from the next connection on.
 */
import http from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { errorMessage, type Logger } from '../logger.js';
import { AGENT_VERSION } from '../version.js';
import type { ModelLease, ModelRepository } from './model-repository.js';
import { ortMessage } from './model-session.js';
import { BinaryReader, splitBinaryBody } from './oip-binary.js';
import { encodeInferResponseParts, parseInferRequest } from './oip-codec.js';
import { parseJsonBody } from './oip-json.js';
import type { MetricsSink } from './serve-metrics.js';
import type { ServeTlsPolicy } from '../policy/local-policy.js';
import { keepServerTlsCurrent, loadServeTls, secureContextOptions } from './serve-tls.js';
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
   * Request bytes held at once by requests being answered; beyond it a request gets 503 and
   * Retry-After. Parsing and running take several times a body's size in memory and block this
   * process's event loop (with one serve worker, the agent's own): the budget bounds both.
   * Default: 2 × maxBodyBytes.
   */
  maxInFlightBytes?: number;
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

export const DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024;
const SERVER_NAME = 'hearth-agent';
const PLATFORM = 'onnxruntime_onnx';

const HTTP_STATUS: Readonly<Record<ServeErrorCode, number>> = {
  BAD_REQUEST: 400,
  PAYLOAD_TOO_LARGE: 413,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  NOT_READY: 503,
  BUSY: 503,
  INFERENCE_FAILED: 500,
  MODEL_LOAD_FAILED: 500,
  INVALID_OPERATION: 500,
};

type Route =
  | { kind: 'server-metadata' | 'live' | 'ready' }
  | { kind: 'model-metadata' | 'model-ready' | 'infer'; name: string; version: string | undefined };

export async function startOipServer(options: OipServerOptions): Promise<OipServer> {
  const { repository, metrics, logger } = options;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const budget = new ByteBudget(options.maxInFlightBytes ?? 2 * maxBodyBytes);
  let closing = false;

  const tlsMaterial = options.tls ? loadServeTls(options.tls) : null;
  const clientCertificates = tlsMaterial !== null && tlsMaterial.ca !== null;

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    if (clientCertificates && !(req.socket as TLSSocket).authorized) {
      res.setHeader('connection', 'close');
      throw new ServeError(
        'FORBIDDEN',
        'this inference server answers only clients with a certificate issued by the CA it trusts ' +
          '(mutual TLS); present one',
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
    try {
      repository.check(name, version); // refuse an unknown or unready model before reading its body
      const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
      if (!DECODERS.has(encoding)) {
        throw badRequest(
          `content-encoding ${encoding.slice(0, 32)} is not supported; send gzip, deflate or identity`,
        );
      }
      held.grow(Number(req.headers['content-length']) || 0);
      const raw = await decode(encoding, await readBody(req, maxBodyBytes, held), maxBodyBytes, held);
      const headerLength = req.headers['inference-header-content-length'];
      const split = headerLength === undefined ? null : splitBinaryBody(raw, [headerLength].flat().join(','));
      const body = parseJson(split ? split.json : raw);
      lease = repository.acquire(name, version);
      const request = parseInferRequest(
        body,
        lease.session,
        split ? new BinaryReader(split.binary) : undefined,
      );
      let outputs;
      try {
        outputs = await lease.session.run(request.feeds, request.outputNames);
      } catch (err) {
        throw new ServeError('INFERENCE_FAILED', `inference failed: ${ortMessage(err)}`);
      }
      const response = encodeInferResponseParts(
        {
          modelName: name,
          modelVersion: lease.version,
          id: request.id,
          outputs: request.outputNames.map((output) => ({ name: output, tensor: outputs[output] })),
        },
        request.binaryOutputs,
      );
      status = 200;
      if (response.binary.length === 0) sendText(res, 200, response.json);
      else sendBinary(res, response.json, response.binary);
    } catch (err) {
      status = sendError(res, err);
    } finally {
      held.release();
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
      // The rest of a body over the limit may still be arriving: close rather than read it all.
      if (err.code === 'PAYLOAD_TOO_LARGE' || err.code === 'BUSY') res.setHeader('connection', 'close');
      if (err.code === 'BUSY') res.setHeader('retry-after', '1');
      if (status >= 500) logger.warn({ code: err.code, err: err.message }, 'inference server error');
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
  const server: http.Server = tlsMaterial
    ? https.createServer(secureContextOptions(tlsMaterial), onRequest)
    : http.createServer(onRequest);
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
  const stopWatching = options.tls
    ? keepServerTlsCurrent(server as https.Server, options.tls, {
        where: 'serve.tls',
        what: 'inference server',
        logger,
        intervalMs: options.tlsReloadMs,
      })
    : () => undefined;

  return {
    port,
    url: `${tlsMaterial ? 'https' : 'http'}://${host}:${port}`,
    close: async (graceMs = 10_000) => {
      closing = true;
      stopWatching();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const force = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(force);
    },
  };
}

/** The route of a request path; null for a path outside the protocol. */
export function matchRoute(url: string): Route | null {
  const parts = pathOf(url, Infinity).replace(/\/+$/, '').split('/').slice(1);
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

/** The path of a request target, in origin form or absolute form (RFC 9112 §3.2), cut for messages. */
function pathOf(url: string | undefined, max = 256): string {
  const path = (url ?? '/').split('?')[0];
  const absolute = /^https?:\/\/[^/]*/i.exec(path);
  return (absolute ? path.slice(absolute[0].length) || '/' : path).slice(0, max);
}

const tooLarge = (limit: number) =>
  new ServeError('PAYLOAD_TOO_LARGE', `the request body is larger than the ${limit}-byte limit`);

function readBody(req: http.IncomingMessage, limit: number, held: HeldBytes): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      try {
        if (size > limit) throw tooLarge(limit);
        held.grow(size); // a chunked body holds what has arrived
      } catch (err) {
        done = true;
        reject(err);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      // A body that arrived in one chunk (most do) is used as is, not copied.
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.on('close', () => {
      if (done) return;
      done = true;
      reject(badRequest('the request body ended early'));
    });
  });
}

const gunzip = promisify(zlib.gunzip);
/** The content encodings taken, by name (a Map: a header value must not match a prototype key). */
const DECODERS = new Map([
  ['identity', null],
  ['gzip', gunzip],
  ['x-gzip', gunzip],
  ['deflate', promisify(zlib.inflate)],
]);

/** The body decompressed (off the event loop, in libuv's pool), held and bounded like any body. */
async function decode(encoding: string, raw: Buffer, limit: number, held: HeldBytes): Promise<Buffer> {
  const decoder = DECODERS.get(encoding);
  if (!decoder) return raw;
  let body: Buffer;
  try {
    body = await decoder(raw, { maxOutputLength: limit });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(limit);
    throw badRequest(`the request body is not valid ${encoding} data`);
  }
  held.grow(raw.length + body.length);
  return body;
}

/**
 * Request bytes held by requests being answered, against one budget. A request holds what it has
 * declared or received so far; growing past the budget is refused (BUSY), except for the only
 * request in flight, which may always proceed up to the body limit.
 */
class ByteBudget {
  private used = 0;
  private holders = 0;
  constructor(private readonly max: number) {}

  hold(): HeldBytes {
    this.holders += 1;
    let mine = 0;
    let released = false;
    return {
      grow: (total: number) => {
        if (released || total <= mine) return;
        if (this.holders > 1 && this.used + (total - mine) > this.max) {
          throw new ServeError(
            'BUSY',
            'the server is busy with other large requests; retry in a moment (see Retry-After)',
          );
        }
        this.used += total - mine;
        mine = total;
      },
      release: () => {
        if (released) return;
        released = true;
        this.used -= mine;
        this.holders -= 1;
      },
    };
  }
}

interface HeldBytes {
  /** Holds `total` bytes for this request in all (not more on top); throws BUSY over budget. */
  grow(total: number): void;
  release(): void;
}

function parseJson(body: Buffer): unknown {
  try {
    return parseJsonBody(body);
  } catch {
    // V8's message quotes the body: say only what is wrong.
    throw badRequest(body.length === 0 ? 'the request body is empty' : 'the request body is not valid JSON');
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  sendText(res, status, JSON.stringify(body));
}

/** A binary-extension response: the JSON header, then the outputs' bytes (oip-binary.ts). */
function sendBinary(res: http.ServerResponse, json: string, binary: Buffer[]): void {
  if (res.headersSent) return;
  const header = Buffer.from(json, 'utf8');
  const body = Buffer.concat([header, ...binary]);
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': body.length,
    'inference-header-content-length': header.length,
  });
  res.end(body);
}

function sendText(res: http.ServerResponse, status: number, text: string): void {
  if (res.headersSent) return;
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  };
  res.writeHead(status, headers);
  res.end(text);
}
