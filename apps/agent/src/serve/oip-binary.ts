/**
 * The binary tensor data extension of the Open Inference Protocol (Triton's `binary_tensor_data`,
 * which KServe's v2 clients share): the body is a JSON header of `Inference-Header-Content-Length`
 * bytes followed by raw tensor bytes. An input with `parameters.binary_data_size` has no `data`: its
 * elements are the next that many bytes, little-endian, row-major; BOOL is one byte per element, BYTES
 * elements each a 4-byte little-endian length and then the bytes. Outputs asked for with
 * `binary_data: true` (or all, with the request's `binary_data_output: true`) come back the same way.
 * Clients such as tritonclient send inputs this way by default; for large tensors it also spares the
 * per-number JSON parse. No library implements it for Node, so it is written here.
 */
import { isUtf8 } from 'node:buffer';
import type { Tensor } from 'onnxruntime-node';
import type { OipDatatype } from './model-session.js';
import { badRequest } from './serve.errors.js';

/** The request body split at the header length the client declared. */
export interface SplitBody {
  readonly json: Buffer;
  readonly binary: Buffer;
}

/** Splits a body by its `Inference-Header-Content-Length` header value. Throws BAD_REQUEST. */
export function splitBinaryBody(body: Buffer, headerValue: string): SplitBody {
  const length = /^\d{1,10}$/.test(headerValue.trim()) ? Number(headerValue) : NaN;
  if (!Number.isSafeInteger(length) || length === 0 || length > body.length) {
    throw badRequest(
      `Inference-Header-Content-Length must be the JSON header's length in bytes, from 1 to the body's ${body.length}`,
    );
  }
  return { json: body.subarray(0, length), binary: body.subarray(length) };
}

/** The typed array onnxruntime takes for each datatype's elements (all but BOOL and BYTES). */
export const TYPED_ARRAYS = {
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  UINT64: BigUint64Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  FP16: Uint16Array, // half-precision bits, as onnxruntime takes them
  FP32: Float32Array,
  FP64: Float64Array,
} as const;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reads the binary sections of a request's inputs in order; `take` refuses reading past the end. */
export class BinaryReader {
  private offset = 0;

  constructor(private readonly data: Buffer) {}

  /** The elements of one input from its `binary_data_size` bytes. Throws BAD_REQUEST. */
  tensorData(name: string, datatype: OipDatatype, count: number, size: unknown): Tensor['data'] {
    if (!Number.isSafeInteger(size) || (size as number) < 0) {
      throw badRequest(`input '${name}': 'binary_data_size' must be a non-negative integer`);
    }
    const bytes = this.take(name, size as number);
    if (datatype === 'BYTES') return byteStrings(name, bytes, count);
    const width = datatype === 'BOOL' ? 1 : TYPED_ARRAYS[datatype].BYTES_PER_ELEMENT;
    if (bytes.length !== count * width) {
      throw badRequest(
        `input '${name}': ${count} ${datatype} elements take ${count * width} bytes, but binary_data_size is ${bytes.length}`,
      );
    }
    if (datatype === 'BOOL') {
      const out = Uint8Array.from(bytes);
      const bad = out.findIndex((v) => v > 1);
      if (bad >= 0) throw badRequest(`input '${name}': element ${bad} is not a BOOL (0 or 1)`);
      return out;
    }
    const out = new TYPED_ARRAYS[datatype](count);
    const view = new Uint8Array(out.buffer);
    // NaN passes: tree ensembles (XGBoost, LightGBM exports) read it as a missing value.
    if (LITTLE_ENDIAN) view.set(bytes);
    else
      for (let i = 0; i < bytes.length; i += width)
        view.set(Buffer.from(bytes.subarray(i, i + width)).reverse(), i);
    return out;
  }

  /** Refuses bytes no input claimed. */
  finish(): void {
    if (this.offset !== this.data.length) {
      throw badRequest(
        `the body has ${this.data.length} bytes after the JSON header, but the inputs' binary_data_size add up to ${this.offset}`,
      );
    }
  }

  private take(name: string, size: number): Buffer {
    if (this.offset + size > this.data.length) {
      throw badRequest(
        `input '${name}': binary_data_size ${size} runs past the end of the body (${this.data.length - this.offset} bytes left)`,
      );
    }
    const bytes = this.data.subarray(this.offset, this.offset + size);
    this.offset += size;
    return bytes;
  }
}

/**
 * The strings of a BYTES section. Every element takes at least its 4-byte length, so a shape that
 * holds more elements than that is refused before any is read, and reading stops at the shape's
 * count: the work is bounded by the shape (itself capped, oip-codec.ts), never by how many empty
 * elements a client packs into the bytes.
 */
function byteStrings(name: string, bytes: Buffer, count: number): string[] {
  if (count > bytes.length / 4) {
    throw badRequest(
      `input '${name}': the shape holds ${count} BYTES elements, more than ${bytes.length} bytes can (each takes a 4-byte length)`,
    );
  }
  const out: string[] = [];
  let at = 0;
  while (out.length < count) {
    if (at === bytes.length) {
      throw badRequest(
        `input '${name}': the shape holds ${count} elements but the binary data has ${out.length}`,
      );
    }
    if (at + 4 > bytes.length) throw badRequest(`input '${name}': a BYTES element's length is cut short`);
    const length = bytes.readUInt32LE(at);
    at += 4;
    if (at + length > bytes.length) throw badRequest(`input '${name}': a BYTES element runs past its data`);
    // onnxruntime-node holds strings, not bytes: refuse what it would change rather than change it.
    const element = bytes.subarray(at, at + length);
    if (!isUtf8(element) || element.includes(0)) {
      throw badRequest(
        `input '${name}': BYTES element ${out.length} is not UTF-8 text without NUL bytes, which is all onnxruntime string tensors hold`,
      );
    }
    out.push(element.toString('utf8'));
    at += length;
  }
  if (at !== bytes.length) {
    throw badRequest(`input '${name}': the binary data has more than the shape's ${count} elements`);
  }
  return out;
}

/** An output tensor's elements as the extension's raw bytes. */
export function tensorBytes(tensor: Tensor): Buffer {
  const data = tensor.data;
  if (tensor.type === 'string') {
    // One buffer, sized first, written in place: a Buffer per length and per text kept ~16M objects
    // alive for a 32 MiB output, enough to exhaust the heap.
    const strings = data as string[];
    let size = 4 * strings.length;
    for (const s of strings) size += Buffer.byteLength(s, 'utf8');
    const out = Buffer.alloc(size);
    let at = 0;
    for (const s of strings) {
      const length = out.write(s, at + 4, 'utf8');
      out.writeUInt32LE(length, at);
      at += 4 + length;
    }
    return out;
  }
  const typed = data as Exclude<Tensor['data'], string[]>;
  const bytes = Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
  if (LITTLE_ENDIAN || typed.BYTES_PER_ELEMENT === 1) return Buffer.from(bytes);
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length; i += typed.BYTES_PER_ELEMENT)
    out.subarray(i, i + typed.BYTES_PER_ELEMENT).reverse();
  return out;
}
