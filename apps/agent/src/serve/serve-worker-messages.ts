/**
 * What the agent and its serve workers (serve-workers.ts, serve-worker.ts) say to each other over
 * the cluster IPC channel, with Node's advanced serialization (model bytes and metric batches
 * travel as typed arrays). Both ends are this agent's own code, started by it.
 */
import type { LogLevel } from '../config/config.js';
import type { ServeLimitsPolicy, ServeTlsPolicy } from '../policy/local-policy.js';
import type { ServeErrorCode } from './serve.errors.js';
import type { ExecutionProvider } from './model-session.js';

/** A model version every worker serves, with its verified bytes. */
export interface WorkerModel {
  readonly name: string;
  readonly version: string;
  readonly bytes: Uint8Array;
}

/** One flush of a worker's request metrics for one model version (parallel arrays). */
export interface MetricsBatch {
  readonly model: string;
  readonly version: string;
  readonly latencyMs: Float64Array;
  readonly status: Uint16Array;
}

export type ToWorker =
  /** Load these models, then listen (the agent holds the socket; cluster shares it). */
  | {
      readonly type: 'init';
      readonly host: string;
      readonly port: number;
      readonly threads: number | null;
      readonly tls: ServeTlsPolicy | null;
      readonly limits: ServeLimitsPolicy | null;
      readonly logLevel: LogLevel;
      readonly models: readonly WorkerModel[];
    }
  /** Load a version beside the served one and answer `prepared`; switch on `commit`. */
  | { readonly type: 'prepare'; readonly id: number; readonly model: WorkerModel }
  | { readonly type: 'commit'; readonly id: number }
  | { readonly type: 'abort'; readonly id: number; readonly reason: string }
  | { readonly type: 'unload'; readonly id: number; readonly name: string }
  /** Stop taking connections, finish requests in flight up to graceMs, exit. */
  | { readonly type: 'close'; readonly graceMs: number };

export type FromWorker =
  /** Listening for messages (what is sent before then is lost): send `init`. */
  | { readonly type: 'started' }
  | { readonly type: 'ready'; readonly port: number }
  | { readonly type: 'init-failed'; readonly error: string }
  | { readonly type: 'prepared'; readonly id: number; readonly executionProvider: ExecutionProvider | null }
  /** The end of a prepare (switched, aborted or failed to load) or of an unload. */
  | {
      readonly type: 'done';
      readonly id: number;
      readonly error?: { readonly code: ServeErrorCode | null; readonly message: string };
    }
  | { readonly type: 'metrics'; readonly batches: readonly MetricsBatch[]; readonly unrouted: number };
