/**
 * The inference server as several processes, for the policy's serve.workers above 1: one Node
 * event loop answers HTTP on one core, so a busy endpoint needs more of them. The agent stays the
 * cluster primary: it holds the listening socket and hands each new connection to the next worker
 * (node:cluster's round robin, its default on Linux: with the other policy, workers accepting
 * from the shared socket themselves, a few kept-alive clients could all land on one worker), and
 * each worker (serve-worker.ts) loads every served model into its own session.
 *
 * A deployment switches every worker together, in two phases: each loads the new version beside
 * the one it serves and says so; only when all have loaded do they all switch, and if any fails
 * to load, none switches (the failed load's error is the deployment's). So clients never see a
 * version on one connection that another worker could not load. A worker that dies is replaced,
 * with backoff, by one that loads what is served before it takes connections. Deploys, unloads
 * and replacements run one at a time.
 */
import cluster, { type Worker } from 'node:cluster';
import net, { type AddressInfo } from 'node:net';
import { builtScript } from '../built-script.js';
import type { LogLevel } from '../config/config.js';
import { errorMessage, type Logger } from '../logger.js';
import type { ExecutionProvider } from './model-session.js';
import type { ServeLimitsPolicy, ServeTlsPolicy } from '../policy/local-policy.js';
import type { MetricsSink } from './serve-metrics.js';
import { loadServeTls } from './serve-tls.js';
import type { FromWorker, ToWorker, WorkerModel } from './serve-worker-messages.js';
import { ServeError } from './serve.errors.js';

export interface ServeWorkersOptions {
  count: number;
  host: string;
  /** 0: a free port, chosen at start (see start()). */
  port: number;
  /** onnxruntime intra-op threads per model in each worker; null: its default. */
  threads: number | null;
  /** HTTPS in every worker (each reads the files and watches them for a rotation); null: HTTP. */
  tls: ServeTlsPolicy | null;
  /** The policy's serve.limits, applied by each worker on its own; null: the server's defaults. */
  limits: ServeLimitsPolicy | null;
  logger: Logger;
  /** Where the workers' request numbers are recorded. */
  metrics: MetricsSink;
  /** The worker's entry; default serve-worker.js beside this module. */
  workerScript?: string;
}

const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;
/** A worker that ran this long before it died was not crash-looping: restart without delay growth. */
const RESTART_RESET_MS = 60_000;
const KILL_AFTER_GRACE_MS = 5_000;

type Reply = Extract<FromWorker, { type: 'prepared' | 'done' }> | { type: 'exited' };

interface Live {
  readonly worker: Worker;
  readonly startedAt: number;
  /** Who waits for this worker's replies, by request id. */
  readonly waiting: Map<number, (reply: Reply) => void>;
}

type Prepared =
  | { kind: 'prepared'; live: Live; provider: ExecutionProvider | null; done: Promise<Reply> }
  | { kind: 'failed'; error: Extract<Reply, { type: 'done' }>['error'] }
  | { kind: 'exited' };

export class ServeWorkers {
  /** Workers that are serving. */
  private readonly live = new Set<Live>();
  /** Every worker process not yet exited, serving or starting. */
  private readonly forked = new Set<Worker>();
  /** Workers told to stop: their exit is not a crash. */
  private readonly stopped = new WeakSet<Worker>();
  /** What every worker serves: each worker that starts loads these first. */
  private readonly models = new Map<string, WorkerModel>();
  private readonly restarts = new Set<NodeJS.Timeout>();
  private port = 0;
  private closing = false;
  private queue: Promise<unknown> = Promise.resolve();
  private nextId = 1;
  private restartDelayMs = RESTART_MIN_MS;

  constructor(private readonly options: ServeWorkersOptions) {}

  /** Starts every worker; the port they share. */
  async start(): Promise<number> {
    cluster.setupPrimary({
      exec: this.options.workerScript ?? builtScript(import.meta.url, 'serve-worker.js'),
      serialization: 'advanced',
    });
    // The files once here, before any worker starts: one ServeTlsError, not one failed init per worker.
    if (this.options.tls) loadServeTls(this.options.tls);
    try {
      // Port 0 becomes a free port now: cluster shares one socket per port asked for, and a
      // replacement worker asking for 0 after every other one died would get a new port.
      this.port = this.options.port === 0 ? await freePort(this.options.host) : this.options.port;
      await Promise.all(Array.from({ length: this.options.count }, () => this.spawn()));
      return this.port;
    } catch (err) {
      await this.stopAll(0);
      throw err;
    }
  }

  /** Loads `version` in every worker and switches all of them to it (see above); its provider. */
  replace(name: string, version: string, bytes: Uint8Array): Promise<ExecutionProvider | null> {
    return this.exclusive(async () => {
      const model: WorkerModel = { name, version, bytes };
      const id = this.nextId++;
      const workers = [...this.live];
      if (workers.length === 0) {
        throw new ServeError('NOT_READY', 'no serve worker is running (one is being restarted)');
      }
      const outcomes = await Promise.all(workers.map((live) => this.prepare(live, id, model)));
      const ready = outcomes.filter((o) => o.kind === 'prepared');
      const failed = outcomes.find((o) => o.kind === 'failed');
      if (failed || ready.length === 0) {
        const reason = failed?.error?.message ?? 'every serve worker exited while the model loaded';
        for (const p of ready) this.send(p.live.worker, { type: 'abort', id, reason });
        await Promise.all(ready.map((p) => p.done));
        throw new ServeError(failed?.error?.code ?? 'NOT_READY', reason);
      }
      // Set before the switch: a worker that starts from now on loads this version.
      this.models.set(name, model);
      for (const p of ready) this.send(p.live.worker, { type: 'commit', id });
      for (const reply of await Promise.all(ready.map((p) => p.done))) {
        if (reply.type === 'done' && reply.error) {
          this.options.logger.warn(
            { model: name, version, err: reply.error.message },
            'a serve worker did not switch',
          );
        }
      }
      return ready[0].provider;
    });
  }

  /** The pids of the workers serving now. */
  pids(): number[] {
    return [...this.live].map((live) => live.worker.process.pid!);
  }

  /** Stops serving `name` in every worker, once their requests in flight are done. */
  unload(name: string): Promise<void> {
    return this.exclusive(async () => {
      this.models.delete(name);
      const id = this.nextId++;
      await Promise.all(
        [...this.live].map(
          (live) =>
            new Promise<void>((resolve) => {
              live.waiting.set(id, () => {
                live.waiting.delete(id);
                resolve();
              });
              this.send(live.worker, { type: 'unload', id, name });
            }),
        ),
      );
    });
  }

  /** Stops every worker: their requests in flight finish (up to 10 s), or none with force. */
  async close(options: { force?: boolean } = {}): Promise<void> {
    this.closing = true;
    for (const timer of this.restarts) clearTimeout(timer);
    this.restarts.clear();
    await this.stopAll(options.force ? 0 : 10_000);
  }

  /** Forks a worker and resolves with its port once it serves what is deployed. */
  private spawn(): Promise<number> {
    const worker = cluster.fork();
    this.forked.add(worker);
    const live: Live = { worker, startedAt: Date.now(), waiting: new Map() };
    return new Promise<number>((resolve, reject) => {
      let started = false;
      worker.on('message', (message: FromWorker) => {
        switch (message.type) {
          case 'started':
            this.send(worker, {
              type: 'init',
              host: this.options.host,
              port: this.port,
              threads: this.options.threads,
              tls: this.options.tls,
              limits: this.options.limits,
              logLevel: this.options.logger.level as LogLevel,
              models: [...this.models.values()],
            });
            return;
          case 'ready':
            started = true;
            this.live.add(live);
            resolve(message.port);
            return;
          case 'init-failed':
            reject(new ServeError('NOT_READY', message.error));
            return;
          case 'prepared':
          case 'done':
            live.waiting.get(message.id)?.(message);
            return;
          case 'metrics':
            this.record(message);
            return;
        }
      });
      worker.on('exit', (code: number | null, signal: string | null) => {
        this.forked.delete(worker);
        this.live.delete(live);
        for (const answer of [...live.waiting.values()]) answer({ type: 'exited' });
        live.waiting.clear();
        const how = signal ?? `exit code ${code}`;
        if (!started) reject(new ServeError('NOT_READY', `a serve worker exited while it started (${how})`));
        else if (!this.closing && !this.stopped.has(worker))
          this.restartLater(Date.now() - live.startedAt, how);
      });
    });
  }

  /** Resolves when the worker has loaded `model` beside what it serves, failed to, or exited. */
  private prepare(live: Live, id: number, model: WorkerModel): Promise<Prepared> {
    return new Promise<Prepared>((resolve) => {
      let finish!: (reply: Reply) => void;
      const done = new Promise<Reply>((r) => (finish = r));
      live.waiting.set(id, (reply) => {
        if (reply.type === 'prepared') {
          resolve({ kind: 'prepared', live, provider: reply.executionProvider, done });
          return;
        }
        live.waiting.delete(id);
        finish(reply);
        resolve(reply.type === 'exited' ? { kind: 'exited' } : { kind: 'failed', error: reply.error });
      });
      this.send(live.worker, { type: 'prepare', id, model });
    });
  }

  private restartLater(livedMs: number, how: string): void {
    if (livedMs >= RESTART_RESET_MS) this.restartDelayMs = RESTART_MIN_MS;
    const delay = this.restartDelayMs;
    this.restartDelayMs = Math.min(delay * 2, RESTART_MAX_MS);
    this.options.logger.warn({ exit: how, restartInMs: delay }, 'a serve worker exited; starting another');
    const timer = setTimeout(() => {
      this.restarts.delete(timer);
      if (this.closing) return;
      this.exclusive(() => (this.closing ? Promise.resolve(0) : this.spawn())).catch((err: unknown) => {
        this.options.logger.error({ err: errorMessage(err) }, 'a serve worker failed to start');
        if (!this.closing) this.restartLater(0, 'failed to start');
      });
    }, delay);
    this.restarts.add(timer);
  }

  private record(message: Extract<FromWorker, { type: 'metrics' }>): void {
    const { metrics } = this.options;
    for (const batch of message.batches) {
      for (let i = 0; i < batch.latencyMs.length; i++) {
        metrics.record(batch.model, batch.version, batch.latencyMs[i], batch.status[i]);
      }
    }
    for (let i = 0; i < message.unrouted; i++) metrics.recordUnrouted();
  }

  private async stopAll(graceMs: number): Promise<void> {
    await Promise.all(
      [...this.forked].map(
        (worker) =>
          new Promise<void>((resolve) => {
            if (worker.isDead()) return resolve();
            this.stopped.add(worker);
            worker.once('exit', () => resolve());
            this.send(worker, { type: 'close', graceMs });
            setTimeout(() => worker.process.kill('SIGKILL'), graceMs + KILL_AFTER_GRACE_MS).unref();
          }),
      ),
    );
  }

  /** A send to a worker whose channel has closed is dropped: its exit answers whoever waits. */
  private send(worker: Worker, message: ToWorker): void {
    if (!worker.isConnected()) return;
    worker.send(message, (err: Error | null) => {
      if (err) this.options.logger.debug({ err: err.message }, 'a message to a serve worker was not sent');
    });
  }

  private exclusive<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** A port free on `host` now (the operating system's pick). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new ServeError(
          'NOT_READY',
          `the inference server cannot listen on ${host}:0: ${err.code ?? err.message}`,
        ),
      ),
    );
    probe.listen(0, host, () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
