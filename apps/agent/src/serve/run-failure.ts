/**
 * What a failed onnxruntime run tells the client, and what it leaves in the log.
 *
 * onnxruntime-node (1.30) throws a plain Error carrying the failing kernel's status message and no
 * status code, so the kind is read from the text. A kernel that fails on inputs which passed the
 * server's own checks (an index out of a Gather's range, shapes that do not broadcast, an impossible
 * Reshape) failed on the client's values: 400, as Triton answers onnxruntime's INVALID_ARGUMENT. A
 * failure to get memory or from a GPU library is the server's: 500. Neither answer quotes
 * onnxruntime's message, which carries its source paths, C++ signatures, the model's node names and
 * sizes, and input values; the message is logged on this machine under an error id the answer gives.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import { ortMessage } from './model-session.js';
import { ServeError } from './serve.errors.js';

// (An Error from another realm, as in jest's, reads "Error: …".)
const KERNEL_FAILURE = /^(?:Error: )?Non-zero status code returned while running (\w{1,64}) node\b/;
/** Out of memory, or a failure inside a GPU runtime or library: nothing the client can change. */
const SERVER_FAULT =
  /out of memory|failed to allocate|bad_alloc|\b(?:cuda|cublas|cublaslt|cudnn|cufft|curand|hip|hipblas|rocm|miopen|rocblas)\w*\b/i;

/** The ServeError to answer for a failed run, logged with the id it names. */
export function runFailure(err: unknown, model: string, log: RunFailureLog): ServeError {
  const message = ortMessage(err);
  const errorId = randomUUID();
  const kernel = KERNEL_FAILURE.exec(message);
  if (kernel && !SERVER_FAULT.test(message)) {
    log.rejected(errorId, model, message);
    return new ServeError(
      'INPUT_REJECTED',
      `the model cannot compute on these inputs: its ${kernel[1]} operator rejected them ` +
        `(error id ${errorId}; the agent's debug log has onnxruntime's message)`,
    );
  }
  log.failed(errorId, model, message);
  return new ServeError('INFERENCE_FAILED', `inference failed on the server (error id ${errorId})`);
}

export interface RunFailureLog {
  /** The client's inputs made a kernel fail. */
  rejected(errorId: string, model: string, message: string): void;
  /** The run failed for the server's own reasons. */
  failed(errorId: string, model: string, message: string): void;
}

/**
 * Log lines for failed runs. A kernel's message may quote input values and any client can cause
 * one per request, so rejected inputs go to the debug level only. Server failures go to warn, at
 * most one line per model every `intervalMs`, each counting the ones it stands for.
 */
export function runFailureLog(logger: Logger, intervalMs = 10_000, now = Date.now): RunFailureLog {
  const gate = new LogGate(intervalMs, now);
  return {
    rejected(errorId, model, message) {
      logger.debug({ errorId, model, err: message }, 'the model rejected the inputs of an inference request');
    },
    failed(errorId, model, message) {
      const failures = gate.pass(model);
      if (failures > 0) logger.warn({ errorId, model, failures, err: message }, 'inference failed');
      else logger.debug({ errorId, model, err: message }, 'inference failed');
    },
  };
}

/**
 * At most one pass per key every interval. Hand-written: pino has no sampling of its own, and this
 * is the whole of what is needed.
 */
export class LogGate {
  private readonly last = new Map<string, { at: number; held: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Whether an event of `key` may be logged now: the number of events the line stands for (this one
   * and those held back since the last line), or 0 to hold it back.
   */
  pass(key: string): number {
    const at = this.now();
    const entry = this.last.get(key);
    if (entry && at - entry.at < this.intervalMs) {
      entry.held += 1;
      return 0;
    }
    const failures = 1 + (entry?.held ?? 0);
    // Keys are model names that were served or error codes: a small set, but bounded all the same.
    if (!entry && this.last.size >= 1024) this.last.clear();
    this.last.set(key, { at, held: 0 });
    return failures;
  }
}
