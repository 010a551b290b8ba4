/**
 * The inference server's errors. Each has a code; oip-server.ts maps codes to HTTP statuses. The
 * message is shown to the client as is, so it names what is wrong and never echoes tensor data.
 */
export const SERVE_ERROR_CODES = [
  /** The request is malformed: invalid JSON, unknown input, shape/data mismatch, wrong datatype… */
  'BAD_REQUEST',
  /** The body, or one of its tensors, is over a limit. */
  'PAYLOAD_TOO_LARGE',
  /** The request target (path and query) is longer than any route needs. */
  'URI_TOO_LONG',
  /** The request body stopped arriving. */
  'REQUEST_TIMEOUT',
  /** Mutual TLS is on and the client presented no certificate its CA issued. */
  'FORBIDDEN',
  /** The connection was authorized under a client CA since replaced: the client must reconnect. */
  'MISDIRECTED',
  /** No such path, model or model version. */
  'NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  /** The model (version) exists but is loading, failed to load, or the server is stopping. */
  'NOT_READY',
  /** Too many request and response bytes in flight: the client should retry shortly. */
  'BUSY',
  /** An operator of the model failed on the request's values (e.g. an index out of range). */
  'INPUT_REJECTED',
  /** onnxruntime failed on a request that passed validation, for the server's own reasons. */
  'INFERENCE_FAILED',
  /** The model file could not be loaded or cannot be served. */
  'MODEL_LOAD_FAILED',
  /** The caller asked the repository for something it cannot do (e.g. load a name twice). */
  'INVALID_OPERATION',
] as const;
export type ServeErrorCode = (typeof SERVE_ERROR_CODES)[number];

export class ServeError extends Error {
  override readonly name = 'ServeError';
  constructor(
    readonly code: ServeErrorCode,
    message: string,
    /**
     * What only this machine's log may hold: text from the model (its node and tensor names can
     * carry anything its author put there), which the message, a job's reason, must not quote.
     */
    readonly localDetail?: string,
  ) {
    super(message);
  }
}

export const badRequest = (message: string) => new ServeError('BAD_REQUEST', message);

/**
 * Client text (a model name or version from the URL) as quoted in an error message: cut at `max`
 * characters, so that an answer is never as large as what the client sent.
 */
export const clipped = (text: string, max = 128) => (text.length > max ? `${text.slice(0, max)}…` : text);
