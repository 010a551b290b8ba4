/**
 * The JSON of an inference request, with its tensor data read straight into a Float64Array:
 * several times faster than JSON.parse for a 64-row request (bench/README.md).
 *
 * Why hand-written: V8's JSON.parse converts each number with a general decimal-to-binary routine
 * and grows a JavaScript array per row, ~35 ns a number here, so a 64-row request of 2,048 features
 * took longer to parse than the model takes to run. Tensor data from clients is mostly short
 * decimals ("-12.3456"), which Clinger's fast path converts exactly: an integer mantissa below 2^53
 * and a power of ten up to 10^22 are both exact binary64 values, so their one IEEE division is
 * correctly rounded, the same double JSON.parse returns. No maintained JavaScript JSON library is
 * faster than V8's own (the native simdjson bindings need a compiler at install and are
 * unmaintained), so this reader takes the bytes itself and leaves everything unusual to V8:
 * - other numbers (exponents, more than 15 digits) go to Number() on their validated text, which
 *   V8 rounds correctly, as JSON.parse does;
 * - strings with escapes or non-ASCII bytes go to JSON.parse on their own text;
 * - anything else it does not expect (invalid JSON, a byte order mark, nesting deeper than 64)
 *   makes it give up, and the whole body goes to JSON.parse, which returns or throws as it always
 *   did;
 * - a `__proto__` key is refused (BAD_REQUEST): no request needs one, and giving up on it late
 *   parsed a 32 MiB body twice.
 * The spec compares the two on random bodies, valid and not.
 *
 * And it keeps tensor data out of JavaScript arrays: the numbers of a `data` value go into one
 * Float64Array (a JavaScript array per row, or a typed array per row, each costs more to make
 * than its numbers cost to read).
 */
import { badRequest } from './serve.errors.js';

/**
 * `JSON.parse(body.toString('utf8'))`, and throws what that throws, with two differences: the value
 * of a `data` key that is a non-empty array of numbers, or of arrays nested regularly down to
 * numbers, comes back as a NumberArray (oip-codec.ts takes either); and a `__proto__` key the
 * reader meets is a ServeError BAD_REQUEST.
 */
export function parseJsonBody(body: Buffer): unknown {
  const reader = new BodyReader(body);
  const value = reader.document();
  if (reader.protoKey) {
    throw badRequest("the request body has a '__proto__' key, which no inference request takes");
  }
  return value === GAVE_UP ? JSON.parse(body.toString('utf8')) : value;
}

/**
 * Numbers as JSON nested them: `dims` are the arrays' lengths from the outermost in (the arrays
 * at each level all have the same length), `values` the numbers in row-major order. [1, 2] has
 * dims [2]; [[1, 2], [3, 4], [5, 6]] has dims [3, 2].
 */
export class NumberArray {
  constructor(
    readonly values: Float64Array | number[],
    readonly dims: readonly number[],
  ) {}

  /** The arrays JSON.parse would have made. */
  toJSON(): unknown[] {
    const build = (depth: number, offset: number): unknown[] => {
      const length = this.dims[depth];
      if (depth === this.dims.length - 1) return Array.from(this.values.slice(offset, offset + length));
      const stride = this.dims.slice(depth + 1).reduce((a, b) => a * b, 1);
      return Array.from({ length }, (_, i) => build(depth + 1, offset + i * stride));
    };
    return build(0, 0);
  }
}

const GAVE_UP = Symbol('gave up');
const MAX_DEPTH = 64;

/** Exact binary64 powers of ten: 10^22 is the largest. */
const POW10 = Float64Array.from({ length: 23 }, (_, i) => Number(`1e${i}`));

/**
 * Where a row of numbers is read before it is copied out at its length. Parsing is synchronous, so
 * one buffer serves every request; one grown past ROW_KEEP numbers is dropped after use.
 */
let rowBuffer = new Float64Array(1024);
const ROW_KEEP = 1 << 16;
/** Up to this many numbers, a plain array is cheaper to make than a typed one (~0.5 µs). */
const SMALL = 256;
const smallArray = (count: number): number[] => {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(rowBuffer[i]);
  return out;
};

// Byte values.
const TAB = 9;
const LF = 10;
const CR = 13;
const SPACE = 32;
const QUOTE = 34;
const PLUS = 43;
const COMMA = 44;
const MINUS = 45;
const DOT = 46;
const ZERO = 48;
const NINE = 57;
const COLON = 58;
const UPPER_E = 69;
const BRACKET_OPEN = 91;
const BACKSLASH = 92;
const BRACKET_CLOSE = 93;
const LOWER_E = 101;
const BRACE_OPEN = 123;
const BRACE_CLOSE = 125;

const isDigit = (c: number) => c >= ZERO && c <= NINE;
const startsNumber = (c: number) => c === MINUS || (c >= ZERO && c <= NINE);

/** A recursive-descent reader of one JSON document; any surprise gives up (it never throws). */
class BodyReader {
  /** It gave up at a `__proto__` key. */
  protoKey = false;
  private pos = 0;
  private failed = false;
  /** For data(): the numbers read into rowBuffer so far, and the depth they are found at. */
  private count = 0;
  private leafDepth = -1;

  constructor(private readonly buf: Buffer) {}

  document(): unknown {
    this.skipSpace();
    const value = this.value(0);
    this.skipSpace();
    return this.failed || this.pos !== this.buf.length ? GAVE_UP : value;
  }

  private giveUp(): undefined {
    this.failed = true;
    return undefined;
  }

  private skipSpace(): void {
    const buf = this.buf;
    let c = buf[this.pos];
    while (c === SPACE || c === LF || c === CR || c === TAB) c = buf[++this.pos];
  }

  private value(depth: number): unknown {
    if (depth > MAX_DEPTH) return this.giveUp();
    const c = this.buf[this.pos];
    if (startsNumber(c)) return this.number();
    switch (c) {
      case QUOTE:
        return this.string();
      case BRACKET_OPEN:
        return this.array(depth);
      case BRACE_OPEN:
        return this.object(depth);
      case 0x74: // t
        return this.literal('true', true);
      case 0x66: // f
        return this.literal('false', false);
      case 0x6e: // n
        return this.literal('null', null);
      default:
        return this.giveUp();
    }
  }

  private array(depth: number): unknown[] | undefined {
    const buf = this.buf;
    this.pos++;
    this.skipSpace();
    const out: unknown[] = [];
    if (buf[this.pos] === BRACKET_CLOSE) {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      if (this.failed) return undefined;
      if (this.closes(BRACKET_CLOSE)) return out;
      if (this.failed) return undefined;
    }
  }

  /**
   * A `data` value: a NumberArray when it is an array of numbers, or arrays of equal lengths at
   * each level with numbers at the innermost; otherwise what JSON.parse makes of it.
   */
  private data(depth: number): unknown {
    if (this.buf[this.pos] !== BRACKET_OPEN) return this.value(depth);
    const first = this.pos;
    const dims: number[] = [];
    this.count = 0;
    this.leafDepth = -1;
    if (this.nested(0, dims)) {
      const values = this.count > SMALL ? rowBuffer.slice(0, this.count) : smallArray(this.count);
      if (rowBuffer.length > ROW_KEEP) rowBuffer = new Float64Array(1024);
      return new NumberArray(values, dims);
    }
    if (this.failed) return undefined;
    this.pos = first;
    return this.value(depth);
  }

  /** One array of a regular nesting (see data()); false at the first irregularity or error. */
  private nested(depth: number, dims: number[]): boolean {
    if (depth > MAX_DEPTH) return false;
    const buf = this.buf;
    this.pos++;
    this.skipSpace();
    let c = buf[this.pos];
    let length: number;
    if (c === BRACKET_OPEN) {
      length = 0;
      for (;;) {
        if (!this.nested(depth + 1, dims)) return false;
        length++;
        this.skipSpace();
        c = buf[this.pos++];
        if (c === BRACKET_CLOSE) break;
        if (c !== COMMA) return this.giveUp() ?? false;
        this.skipSpace();
        if (buf[this.pos] !== BRACKET_OPEN) return false;
      }
    } else if (startsNumber(c)) {
      if (this.leafDepth === -1) this.leafDepth = depth;
      else if (this.leafDepth !== depth) return false;
      const before = this.count;
      if (!this.numbers()) return false;
      length = this.count - before;
    } else {
      return false; // empty, or another kind of value
    }
    dims[depth] ??= length; // innermost first: the recursion sets lengths on its way out
    return dims[depth] === length;
  }

  /**
   * The numbers of an innermost array into rowBuffer, up to and past its ']'. The separators are
   * read with a local index, not through this.pos and closes(): a third of the time of a row.
   */
  private numbers(): boolean {
    const buf = this.buf;
    let row = rowBuffer;
    let n = this.count;
    let i = this.pos;
    for (;;) {
      this.pos = i;
      const value = this.number();
      if (value === undefined) return false;
      i = this.pos;
      let c = buf[i];
      if (n === row.length) {
        const grown = new Float64Array(n * 2);
        grown.set(row);
        row = rowBuffer = grown;
      }
      row[n++] = value;
      while (c === SPACE || c === LF || c === CR || c === TAB) c = buf[++i];
      i++;
      if (c === BRACKET_CLOSE) break;
      if (c !== COMMA) return this.giveUp() ?? false;
      c = buf[i];
      while (c === SPACE || c === LF || c === CR || c === TAB) c = buf[++i];
      if (!startsNumber(c)) return false;
    }
    this.pos = i;
    this.count = n;
    return true;
  }

  private object(depth: number): Record<string, unknown> | undefined {
    const buf = this.buf;
    const out: Record<string, unknown> = {};
    this.pos++;
    this.skipSpace();
    if (buf[this.pos] === BRACE_CLOSE) {
      this.pos++;
      return out;
    }
    for (;;) {
      if (buf[this.pos] !== QUOTE) return this.giveUp();
      const key = this.string();
      if (key === undefined) return this.giveUp();
      // Assigning '__proto__' would set the prototype (JSON.parse makes an own property).
      if (key === '__proto__') {
        this.protoKey = true;
        return this.giveUp();
      }
      this.skipSpace();
      if (buf[this.pos] !== COLON) return this.giveUp();
      this.pos++;
      this.skipSpace();
      out[key] = key === 'data' ? this.data(depth + 1) : this.value(depth + 1);
      if (this.failed) return undefined;
      if (this.closes(BRACE_CLOSE)) return out;
      if (this.failed) return undefined;
    }
  }

  /** After a member: true at `close`, false at a comma (either read past); otherwise gives up. */
  private closes(close: number): boolean {
    this.skipSpace();
    const next = this.buf[this.pos++];
    if (next === close) return true;
    if (next === COMMA) this.skipSpace();
    else this.giveUp();
    return false;
  }

  private string(): string | undefined {
    const buf = this.buf;
    const start = this.pos; // the opening quote
    let plain = true;
    let i = start + 1;
    for (;;) {
      const c = buf[i];
      if (c === QUOTE) break;
      if (c === undefined || c < 0x20) return this.giveUp();
      if (c === BACKSLASH) {
        plain = false;
        i += 2;
        continue;
      }
      if (c >= 0x80) plain = false;
      i++;
    }
    this.pos = i + 1;
    if (plain) return buf.toString('latin1', start + 1, i);
    // Escapes and UTF-8 are V8's to decode; an invalid escape is the whole body's error.
    try {
      return JSON.parse(buf.toString('utf8', start, i + 1)) as string;
    } catch {
      return this.giveUp();
    }
  }

  private literal<T>(text: string, value: T): T | undefined {
    for (let k = 0; k < text.length; k++) {
      if (this.buf[this.pos + k] !== text.charCodeAt(k)) return this.giveUp();
    }
    this.pos += text.length;
    return value;
  }

  /** -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, as JSON defines a number. */
  private number(): number | undefined {
    const buf = this.buf;
    const start = this.pos;
    let i = start;
    let c = buf[i];
    const negative = c === MINUS;
    if (negative) c = buf[++i];
    let mantissa = 0;
    if (c === ZERO) {
      c = buf[++i];
      if (isDigit(c)) return this.giveUp(); // a leading zero
    } else if (isDigit(c)) {
      do {
        mantissa = mantissa * 10 + (c - ZERO);
        c = buf[++i];
      } while (isDigit(c));
    } else {
      return this.giveUp();
    }
    let fractionDigits = 0;
    if (c === DOT) {
      const dot = i;
      c = buf[++i];
      if (!isDigit(c)) return this.giveUp();
      do {
        mantissa = mantissa * 10 + (c - ZERO);
        c = buf[++i];
      } while (isDigit(c));
      fractionDigits = i - dot - 1;
    }
    let exact = true;
    if (c === LOWER_E || c === UPPER_E) {
      exact = false;
      c = buf[++i];
      if (c === PLUS || c === MINUS) c = buf[++i];
      if (!isDigit(c)) return this.giveUp();
      do c = buf[++i];
      while (isDigit(c));
    }
    this.pos = i;
    // The running mantissa only grows: ending at or below 2^53 - 1 means every step was exact.
    if (exact && mantissa <= Number.MAX_SAFE_INTEGER && fractionDigits <= 22) {
      const magnitude = fractionDigits === 0 ? mantissa : mantissa / POW10[fractionDigits];
      return negative ? -magnitude : magnitude;
    }
    return Number(buf.toString('latin1', start, i));
  }
}
