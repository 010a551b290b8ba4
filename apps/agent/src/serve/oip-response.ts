/**
 * Responses of the inference server: an inference's body encoded (JSON, with the binary tensor data
 * extension's parts after it when asked for), and any response written to a client that may not
 * read it. A response a client leaves unread stays in this process until it is taken: with no
 * limit, a few dozen connections that asked for large answers and never read them exhausted the
 * heap and killed the agent. So a response is written in slices, each handed on only once the
 * client has taken the one before, and a client that takes nothing for `idleMs` loses its
 * connection (and the response its memory). The inference server keeps a response's bytes in its
 * budget until then.
 */
import type http from 'node:http';
import type { Tensor } from 'onnxruntime-node';
import { ORT_TYPE } from './model-session.js';
import { tensorBytes } from './oip-binary.js';
import type { IdleWatch } from './oip-idle.js';
import { halfToFloat } from './oip-codec.js';
import { badRequest } from './serve.errors.js';

export interface InferResponse {
  readonly modelName: string;
  readonly modelVersion: string;
  readonly id: string | undefined;
  readonly outputs: readonly { readonly name: string; readonly tensor: Tensor }[];
}

const OIP_OF_ORT = new Map(Object.entries(ORT_TYPE).map(([oip, t]) => [t, oip]));

/**
 * The response body as JSON text. Written by hand so INT64/UINT64 values keep every digit (a
 * BigInt has no JSON form, and a double would round values beyond 2^53).
 */
export function encodeInferResponse(response: InferResponse): string {
  return encodeInferResponseParts(response).json;
}

/**
 * The response as its JSON header and the binary data of the outputs in `binary` (in output order,
 * after the header, see oip-binary.ts); with no binary outputs, the JSON is the whole body. JSON
 * past `maxJsonBytes` is refused (BAD_REQUEST) while it is written, before it is whole.
 */
export function encodeInferResponseParts(
  response: InferResponse,
  binary: ReadonlySet<string> = new Set(),
  maxJsonBytes = Infinity,
): { json: string; binary: Buffer[] } {
  const parts: Buffer[] = [];
  const text = new JsonText(maxJsonBytes);
  const head = JSON.stringify({
    model_name: response.modelName,
    model_version: response.modelVersion,
    ...(response.id !== undefined ? { id: response.id } : {}),
  });
  text.add(`${head.slice(0, -1)},"outputs":[`);
  response.outputs.forEach(({ name, tensor }, index) => {
    const datatype = OIP_OF_ORT.get(tensor.type);
    if (!datatype) throw new Error(`output '${name}' has element type ${tensor.type}`);
    if (index > 0) text.add(',');
    if (binary.has(name)) {
      const bytes = tensorBytes(tensor);
      parts.push(bytes);
      text.add(
        JSON.stringify({
          name,
          datatype,
          shape: tensor.dims.map(Number),
          parameters: { binary_data_size: bytes.length },
        }),
      );
      return;
    }
    const output = JSON.stringify({ name, datatype, shape: tensor.dims.map(Number) });
    text.add(`${output.slice(0, -1)},"data":[`);
    tensorDataJson(tensor, text);
    text.add(']}');
  });
  text.add(']}');
  return { json: text.toString(), binary: parts };
}

/**
 * JSON text in pieces, with its size in bytes counted as each piece is added. A response's JSON is
 * one string on the heap, several times the size of the tensors it holds (about 20 bytes per FP32
 * value): unbounded, one request's 32 MiB output took 154 MiB, and a few clients that did not read
 * theirs exhausted the heap. Binary outputs carry the same data at its own size.
 */
class JsonText {
  private readonly pieces: string[] = [];
  private bytes = 0;

  constructor(private readonly max: number) {}

  add(piece: string): void {
    this.bytes += Buffer.byteLength(piece, 'utf8');
    if (this.bytes > this.max) {
      throw badRequest(
        `the response would take more than ${this.max} bytes of JSON; ask for the outputs as binary data ` +
          `(the binary_tensor_data extension: "parameters": {"binary_data_output": true})`,
      );
    }
    this.pieces.push(piece);
  }

  toString(): string {
    return this.pieces.join('');
  }
}

/** Elements written to JSON at a time: each piece is counted before the next is made. */
const JSON_PIECE = 65_536;

/** A tensor's elements, comma-separated without the brackets, into `text`. */
function tensorDataJson(tensor: Tensor, text: JsonText): void {
  const data = tensor.data;
  for (let at = 0; at < data.length; at += JSON_PIECE) {
    const piece = data.length <= JSON_PIECE ? data : data.slice(at, at + JSON_PIECE);
    if (at > 0) text.add(',');
    text.add(elementsJson(tensor.type, piece));
  }
}

function elementsJson(type: Tensor['type'], data: Tensor['data']): string {
  switch (type) {
    case 'int64':
    case 'uint64':
      return (data as BigInt64Array | BigUint64Array).join(',');
    case 'bool':
      return JSON.stringify(Array.from(data as Uint8Array, (v) => v !== 0)).slice(1, -1);
    case 'float16':
      return JSON.stringify(Array.from(data as Uint16Array, halfToFloat)).slice(1, -1);
    case 'string':
      return JSON.stringify(data).slice(1, -1);
    default:
      // NaN and ±Infinity have no JSON form: JSON.stringify writes them as null.
      return JSON.stringify(Array.from(data as Float32Array)).slice(1, -1);
  }
}

/** A response body in the parts it is written from, and its size in bytes. */
export interface ResponseBody {
  readonly headers: http.OutgoingHttpHeaders;
  /** A JSON body is its text (written with the headers in one string, as node:http does for text). */
  readonly parts: readonly (Buffer | string)[];
  readonly size: number;
}

/** A JSON body. */
export function jsonBody(text: string): ResponseBody {
  return { headers: { 'content-type': 'application/json' }, parts: [text], size: Buffer.byteLength(text) };
}

/** An inference's body: its JSON, then (binary tensor data extension, oip-binary.ts) its binary outputs. */
export function inferBody(json: string, binary: readonly Buffer[]): ResponseBody {
  if (binary.length === 0) return jsonBody(json);
  const header = Buffer.from(json, 'utf8');
  const parts = [header, ...binary];
  return {
    headers: {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': header.length,
    },
    parts,
    size: parts.reduce((n, part) => n + part.length, 0),
  };
}

/**
 * Progress is a slice taken, so a slice bounds how much a client must take per idle time to keep
 * its connection: 256 KiB per 30 s by default, about 9 KB/s.
 */
const SLICE = 256 * 1024;

/**
 * Writes the response (nothing once headers are sent); see the file header. A response the socket
 * could not pass on at once is watched until the client has taken it, and its connection
 * destroyed once the client takes nothing for `idle.ms`.
 */
export function writeResponse(
  res: http.ServerResponse,
  status: number,
  body: ResponseBody,
  idle: { watch: IdleWatch; ms: number },
): void {
  if (res.headersSent) return;
  res.writeHead(status, { ...body.headers, 'content-length': body.size });
  if (body.parts.length === 1 && body.size <= SLICE) {
    res.end(body.parts[0]); // most answers: one write
    // An answer that fits the socket's buffers costs little left unread (and connections are
    // capped): only larger ones are watched.
    if (body.size > UNWATCHED_BYTES) watchUntilClosed(res, idle);
    return;
  }
  watchUntilClosed(res, idle);
  const slices = body.parts.flatMap((text) => {
    const part = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    return Array.from({ length: Math.ceil(part.length / SLICE) }, (_, i) =>
      part.subarray(i * SLICE, (i + 1) * SLICE),
    );
  });
  let next = 0;
  const write = (): void => {
    while (!res.destroyed) {
      if (next >= slices.length - 1) {
        res.end(slices[next]);
        return;
      }
      if (!res.write(slices[next++])) {
        res.once('drain', () => {
          idle.watch.touch(res);
          write();
        });
        return;
      }
    }
  };
  write();
}

const UNWATCHED_BYTES = 64 * 1024;

function watchUntilClosed(res: http.ServerResponse, idle: { watch: IdleWatch; ms: number }): void {
  idle.watch.watch(res, idle.ms, () => res.destroy());
  res.once('close', () => idle.watch.unwatch(res));
}
