/**
 * A request body read into memory for one inference: within the body limit, against the byte
 * budget shared by the requests in flight, and only while it keeps arriving. Bodies may be gzip or
 * deflate encoded, as Triton's clients can send them.
 */
import type http from 'node:http';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { IdleWatch } from './oip-idle.js';
import { ServeError, badRequest } from './serve.errors.js';

export const tooLarge = (limit: number) =>
  new ServeError('PAYLOAD_TOO_LARGE', `the request body is larger than the ${limit}-byte limit`);

/**
 * The body as it arrived. What has arrived is held against the budget, never what Content-Length
 * announces: two connections that announced the limit and sent nothing held the whole budget, and
 * every other inference got 503 until Node gave up on them minutes later. So an announced length
 * over `limit` is the caller's to refuse, up front (413, not 503 while the budget is busy); a body
 * that streams past it is refused here (PAYLOAD_TOO_LARGE). A body that stops arriving for
 * `idleMs` is refused (REQUEST_TIMEOUT), so a stalled upload frees its connection and its bytes
 * within seconds.
 */
export function readBody(
  req: http.IncomingMessage,
  held: HeldBytes,
  limit: number,
  idle: { watch: IdleWatch; ms: number },
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const fail = (err: ServeError) => {
      if (done) return;
      done = true;
      idle.watch.unwatch(req);
      reject(err);
    };
    // Restarted by every chunk read; over once the body is in, so a long run is not cut.
    idle.watch.watch(req, idle.ms, () =>
      fail(new ServeError('REQUEST_TIMEOUT', `the request body stopped arriving for ${idle.ms / 1000} s`)),
    );
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      idle.watch.touch(req);
      size += chunk.length;
      try {
        if (size > limit) throw tooLarge(limit);
        held.grow(size);
      } catch (err) {
        fail(err as ServeError);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      idle.watch.unwatch(req);
      // A body that arrived in one chunk (most do) is used as is, not copied.
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    // 'close' also follows a body read whole: no error is made then (making one costs its stack).
    req.on('close', () => {
      if (!done) fail(badRequest('the request body ended early'));
    });
  });
}

const gunzip = promisify(zlib.gunzip);
/** The content encodings taken, by name (a Map: a header value must not match a prototype key). */
export const DECODERS = new Map([
  ['identity', null],
  ['gzip', gunzip],
  ['x-gzip', gunzip],
  ['deflate', promisify(zlib.inflate)],
]);

/** The body decompressed (off the event loop, in libuv's pool), held and bounded like any body. */
export async function decode(encoding: string, raw: Buffer, limit: number, held: HeldBytes): Promise<Buffer> {
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
 * Bytes held by requests being answered, against one budget: what each has received so far, then
 * its response, until the client has taken that response or gone. Growing past the budget is
 * refused (BUSY), except for the only request in flight, which may always proceed.
 */
export class ByteBudget {
  private used = 0;
  private holders = 0;
  constructor(private readonly max: number) {}

  hold(): HeldBytes {
    this.holders += 1;
    let mine = 0;
    let released = false;
    return {
      get bytes() {
        return mine;
      },
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

export interface HeldBytes {
  /** What this request holds now. */
  readonly bytes: number;
  /** Holds `total` bytes for this request in all (not more on top); throws BUSY over budget. */
  grow(total: number): void;
  release(): void;
}
