/**
 * Reads a dataset (dataset.ts) or a table of features (feature-table.ts) in a worker thread, so
 * the agent's event loop goes on while a large file is parsed: its heartbeat keeps the leases of
 * its attempts (a 256 MiB CSV takes over ten seconds here, past the lease), its inference server
 * keeps answering, and a cancel stops the read at once (the worker is terminated).
 *
 * The worker has its own heap limit, so a file that needs more memory than its size promises (very
 * long fields or lines) fails that job with a clear reason instead of taking the agent, and every
 * deployment it serves, down with it. The default leaves room for the file's text (twice its
 * bytes: text beyond Latin-1 is held as UTF-16) and 256 MiB for the parse.
 */
import { Worker } from 'node:worker_threads';
import { builtScript } from '../built-script.js';
import { DatasetError, type Dataset, type DatasetOptions } from './dataset.js';
import type { FeatureTable, FeatureTableOptions } from './feature-table.js';

export type TableRequest =
  | { kind: 'dataset'; filePath: string; options: DatasetOptions }
  | { kind: 'features'; filePath: string; options: FeatureTableOptions };

/** What the worker posts back: the table, a DatasetError's parts, or an unexpected error's stack. */
export type TableReply =
  | { ok: true; kind: 'dataset'; value: Dataset }
  | { ok: true; kind: 'features'; value: FeatureTable }
  | { ok: false; message: string; localDetail?: string }
  | { ok: false; internal: string };

export interface OffThreadOptions {
  /** Aborting terminates the worker; the load rejects with the signal's reason. */
  signal?: AbortSignal;
  /** The worker's heap (old generation) limit in MiB; default from the file size limit (above). */
  heapLimitMb?: number;
  /** Tests: the worker's entry; default the build's table-worker.js. */
  workerScript?: string;
}

const PARSE_HEAP_MB = 256;

/** loadDataset (dataset.ts) in a worker thread. */
export async function loadDatasetOffThread(
  filePath: string,
  options: DatasetOptions,
  run: OffThreadOptions = {},
): Promise<Dataset> {
  const reply = await inWorker({ kind: 'dataset', filePath, options }, options.maxBytes, run);
  if (reply.kind !== 'dataset') throw new Error(`the dataset worker answered a ${reply.kind} table`);
  return reply.value;
}

/** loadFeatureTable (feature-table.ts) in a worker thread. */
export async function loadFeatureTableOffThread(
  filePath: string,
  options: FeatureTableOptions,
  run: OffThreadOptions = {},
): Promise<FeatureTable> {
  const reply = await inWorker({ kind: 'features', filePath, options }, options.maxBytes, run);
  if (reply.kind !== 'features') throw new Error(`the dataset worker answered a ${reply.kind} table`);
  return reply.value;
}

export function defaultHeapLimitMb(maxBytes: number): number {
  return Math.ceil((2 * maxBytes) / 2 ** 20) + PARSE_HEAP_MB;
}

function inWorker(
  request: TableRequest,
  maxBytes: number,
  run: OffThreadOptions,
): Promise<Extract<TableReply, { ok: true }>> {
  const { signal } = run;
  signal?.throwIfAborted();
  const heapLimitMb = run.heapLimitMb ?? defaultHeapLimitMb(maxBytes);
  return new Promise((resolve, reject) => {
    const worker = new Worker(run.workerScript ?? builtScript(import.meta.url, 'table-worker.js'), {
      workerData: request,
      resourceLimits: { maxOldGenerationSizeMb: heapLimitMb },
    });
    let settled = false;
    const settle = (finish: () => void) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      finish();
    };
    const onAbort = () => {
      settle(() => reject(signal!.reason));
      void worker.terminate();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (reply: TableReply) =>
      settle(() => {
        if (reply.ok) resolve(reply);
        else if ('internal' in reply) reject(new Error(`the dataset worker failed: ${reply.internal}`));
        else reject(new DatasetError(reply.message, reply.localDetail));
      }),
    );
    worker.once('error', (err: NodeJS.ErrnoException) =>
      settle(() =>
        reject(
          err.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? new DatasetError(
                `reading the dataset needed more than the ${heapLimitMb} MiB of memory this agent allows ` +
                  `for a file of up to ${maxBytes} bytes ("maxDatasetBytes" in the local policy); ` +
                  'very long fields or lines cost the most',
              )
            : err,
        ),
      ),
    );
    worker.once('exit', (code) =>
      settle(() => reject(new Error(`the dataset worker exited (code ${code}) without an answer`))),
    );
  });
}
