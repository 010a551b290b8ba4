/**
 * The entry of the worker thread that reads a dataset for table-loader.ts: parses the file named
 * in workerData, posts the result (its arrays transferred, not copied) or the error, and ends.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { DatasetError, loadDataset } from './dataset.js';
import { loadFeatureTable } from './feature-table.js';
import type { TableReply, TableRequest } from './table-loader.js';

if (isMainThread || !parentPort) {
  process.stderr.write('table-worker.js is started by hearth-agent to read a dataset, not run by hand\n');
  process.exit(2);
}
const port = parentPort;

async function load(request: TableRequest): Promise<TableReply> {
  try {
    if (request.kind === 'dataset') {
      return { ok: true, kind: 'dataset', value: await loadDataset(request.filePath, request.options) };
    }
    return { ok: true, kind: 'features', value: await loadFeatureTable(request.filePath, request.options) };
  } catch (err) {
    if (err instanceof DatasetError) return { ok: false, message: err.message, localDetail: err.localDetail };
    return { ok: false, internal: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  }
}

const reply = await load(workerData as TableRequest);
const transfer = !reply.ok
  ? []
  : reply.kind === 'dataset'
    ? [reply.value.features.buffer, reply.value.targets.buffer]
    : [reply.value.features.buffer];
port.postMessage(reply, transfer as ArrayBuffer[]);
