/**
 * A serve worker: one process of the agent's inference server when the policy's serve.workers is
 * above 1 (serve-workers.ts starts them with node:cluster). Each loads every served model into its
 * own onnxruntime session and answers the Open Inference Protocol on the port the agent holds;
 * the kernel's accept queue and cluster spread connections over the workers, so serving uses as
 * many cores as there are workers. Its request metrics go to the agent in batches (numbers only),
 * and it exits when the agent closes it or goes away.
 */
import cluster from 'node:cluster';
import { createLogger, errorMessage, type Logger } from '../logger.js';
import { ModelRepository } from './model-repository.js';
import { loadModelSession } from './model-session.js';
import { limitOptions, startOipServer, type OipServer } from './oip-server.js';
import type { MetricsSink } from './serve-metrics.js';
import type { FromWorker, MetricsBatch, ToWorker, WorkerModel } from './serve-worker-messages.js';
import { ServeError } from './serve.errors.js';

const METRICS_FLUSH_MS = 250;

if (!cluster.isWorker || !process.send) {
  process.stderr.write('serve-worker.js is started by hearth-agent (serve.workers), not run by hand\n');
  process.exit(2);
}

const send = (message: FromWorker) => {
  if (process.connected) process.send!(message);
};

/** Request numbers, sent to the agent every METRICS_FLUSH_MS. */
class BatchedMetrics implements MetricsSink {
  private series = new Map<string, { model: string; version: string; latency: number[]; status: number[] }>();
  private unrouted = 0;

  record(model: string, version: string, latencyMs: number, status: number): void {
    const key = `${model}\0${version}`;
    let s = this.series.get(key);
    if (!s) {
      s = { model, version, latency: [], status: [] };
      this.series.set(key, s);
    }
    s.latency.push(latencyMs);
    s.status.push(status);
  }

  recordUnrouted(): void {
    this.unrouted += 1;
  }

  flush(): void {
    if (this.series.size === 0 && this.unrouted === 0) return;
    const batches: MetricsBatch[] = [...this.series.values()].map((s) => ({
      model: s.model,
      version: s.version,
      latencyMs: Float64Array.from(s.latency),
      status: Uint16Array.from(s.status),
    }));
    send({ type: 'metrics', batches, unrouted: this.unrouted });
    this.series = new Map();
    this.unrouted = 0;
  }
}

let logger: Logger = createLogger('info', { component: 'serve-worker' });
let repository: ModelRepository | null = null;
let server: OipServer | null = null;
const metrics = new BatchedMetrics();
/** Prepared versions waiting for the agent's commit or abort, by request id. */
const gates = new Map<number, { commit: () => void; abort: (reason: Error) => void }>();
let closing = false;

process.on('message', (message: ToWorker) => {
  void handle(message).catch((err: unknown) => {
    logger.error({ err: errorMessage(err), type: message.type }, 'serve worker message failed');
  });
});
// The agent is gone (stopped or killed): nothing will be deployed or closed here any more.
process.on('disconnect', () => void shutDown(1_000));
send({ type: 'started' });

async function handle(message: ToWorker): Promise<void> {
  switch (message.type) {
    case 'init':
      return init(message);
    case 'prepare':
      return prepare(message.id, message.model);
    case 'commit':
      gates.get(message.id)?.commit();
      return;
    case 'abort':
      gates.get(message.id)?.abort(new ServeError('INVALID_OPERATION', message.reason));
      return;
    case 'unload':
      await repository?.unload(message.name);
      metrics.flush(); // the unloaded version's last numbers reach the agent before the reply
      send({ type: 'done', id: message.id });
      return;
    case 'close':
      return shutDown(message.graceMs);
  }
}

async function init(message: Extract<ToWorker, { type: 'init' }>): Promise<void> {
  logger = createLogger(message.logLevel, {
    component: 'serve-worker',
    worker: String(cluster.worker?.id ?? ''),
  });
  repository = new ModelRepository({
    logger,
    loadSession: (source) => loadModelSession(source, { intraOpThreads: message.threads ?? undefined }),
  });
  try {
    // Every served model first: a worker takes connections only once it can answer them.
    for (const model of message.models) await repository.replace(model.name, model.version, model.bytes);
    server = await startOipServer({
      host: message.host,
      port: message.port,
      tls: message.tls,
      ...limitOptions(message.limits ?? undefined),
      repository,
      metrics,
      logger,
    });
  } catch (err) {
    logLocalDetail(err);
    send({ type: 'init-failed', error: errorMessage(err) });
    await shutDown(0);
    return;
  }
  setInterval(() => metrics.flush(), METRICS_FLUSH_MS).unref();
  send({ type: 'ready', port: server.port });
}

/** What a load failure may say only here (the model's own text), before its message goes up. */
function logLocalDetail(err: unknown): void {
  if (err instanceof ServeError && err.localDetail) logger.warn({ detail: err.localDetail }, err.message);
}

async function prepare(id: number, model: WorkerModel): Promise<void> {
  try {
    await repository!.replace(model.name, model.version, model.bytes, (loaded) => {
      send({ type: 'prepared', id, executionProvider: loaded.executionProvider });
      return new Promise<void>((commit, abort) => gates.set(id, { commit, abort }));
    });
    metrics.flush();
    send({ type: 'done', id });
  } catch (err) {
    logLocalDetail(err);
    const code = err instanceof ServeError ? err.code : null;
    send({ type: 'done', id, error: { code, message: errorMessage(err) } });
  } finally {
    gates.delete(id);
  }
}

async function shutDown(graceMs: number): Promise<void> {
  if (closing) return;
  closing = true;
  for (const gate of gates.values()) gate.abort(new ServeError('NOT_READY', 'the serve worker is stopping'));
  try {
    await server?.close(graceMs);
    await repository?.close({ force: graceMs === 0 });
    metrics.flush();
  } catch (err) {
    logger.warn({ err: errorMessage(err) }, 'serve worker did not stop cleanly');
  }
  process.exit(0);
}
