/**
 * The agent's one inference server and the deployments on it. The server starts with the first
 * `serve` job, on the local policy's address, and all deployments share it. A deployment is one
 * serve job's model version under its name; a newer deployment of the same name replaces it
 * (without failing requests in flight, see ModelRepository), and the older one learns by whom.
 * Deploys and undeploys of one name run one after another, so an undeploy of a replaced
 * deployment can never unload its successor. The server runs in the agent's own process, or, with
 * serve.workers above 1, as that many worker processes (serve-workers.ts).
 */
import os from 'node:os';
import type { ServeMetrics as ServeMetricsMessage } from '@hearth/contracts';
import type { Logger } from '../logger.js';
import type { ServeLimitsPolicy, ServeTlsPolicy } from '../policy/local-policy.js';
import { ModelRepository, type SessionLoader } from './model-repository.js';
import type { ExecutionProvider } from './model-session.js';
import type { OipServer } from './oip-server.js';
import { ServeMetrics, teeSink, type MetricsSink } from './serve-metrics.js';
import { ServeWorkers } from './serve-workers.js';
import { ServeError } from './serve.errors.js';

export interface ServeAddress {
  readonly host: string;
  /** 0: any free port. */
  readonly port: number;
  /** HTTPS with these files; null or absent: plain HTTP. */
  readonly tls?: ServeTlsPolicy | null;
  /** The policy's serve.limits; absent: the server's defaults. */
  readonly limits?: ServeLimitsPolicy;
}

export interface ServeHostOptions {
  address: ServeAddress;
  logger: Logger;
  /** onnxruntime intra-op threads per model for the default loader; null or absent: its default. */
  threads?: number | null;
  /** Processes serving (the policy's serve.workers); 1 or absent: the agent's own. */
  workers?: number;
  /** Default loadModelSession (CUDA where installed, else CPU) with `threads`; in process only. */
  loadSession?: SessionLoader;
  /** The serve worker's entry (serve-workers.ts); default the build's serve-worker.js. */
  workerScript?: string;
  /** Also told of every inference request (the agent's metrics endpoint). */
  observer?: ServeObserver;
}

/** A second recorder of inference requests, told when a version's numbers are dropped. */
export interface ServeObserver extends MetricsSink {
  forget(model: string, version: string): void;
}

/** Where the models are served: this process, or the serve workers. */
interface ServeBackend {
  /** Starts serving; the port it listens on. */
  start(): Promise<number>;
  /** Loads `version` and serves it under `name` (see ModelRepository.replace); its provider. */
  replace(name: string, version: string, bytes: Uint8Array): Promise<ExecutionProvider | null>;
  unload(name: string): Promise<void>;
  close(options: { force?: boolean }): Promise<void>;
  /** The pids of the serve worker processes answering now; none when the agent serves itself. */
  pids(): number[];
}

/** One serve job's model version, live on the server until it is undeployed or replaced. */
export class Deployment {
  private resolveReplaced!: (version: string) => void;
  /** Resolves with the version that replaced this one; never, if it is undeployed. */
  readonly replaced = new Promise<string>((resolve) => (this.resolveReplaced = resolve));

  constructor(
    readonly id: string,
    readonly name: string,
    readonly version: string,
    readonly executionProvider: ExecutionProvider,
  ) {}

  markReplaced(version: string): void {
    this.resolveReplaced(version);
  }
}

export class ServeHost {
  readonly metrics = new ServeMetrics();
  private readonly backend: ServeBackend;
  private port: Promise<number> | null = null;
  /** The current deployment of each name. */
  private readonly current = new Map<string, Deployment>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(private readonly options: ServeHostOptions) {
    const { address, logger } = options;
    const sink = options.observer ? teeSink(this.metrics, options.observer) : this.metrics;
    this.backend =
      (options.workers ?? 1) > 1
        ? new ServeWorkers({
            count: options.workers!,
            host: address.host,
            port: address.port,
            threads: options.threads ?? null,
            tls: address.tls ?? null,
            limits: address.limits ?? null,
            logger,
            metrics: sink,
            workerScript: options.workerScript,
          })
        : new InProcessServer(options, sink);
  }

  /**
   * Starts the server on first use and returns its endpoint; a failed start is tried again next
   * time. TLS files that cannot be used fail it with a ServeTlsError naming the file.
   */
  async start(): Promise<string> {
    if (this.closed) throw new ServeError('NOT_READY', 'the agent is stopping');
    const { host, tls } = this.options.address;
    this.port ??= (async () => {
      const port = await this.backend.start();
      if (!tls && !isLoopback(host)) {
        this.options.logger.warn(
          { host, port },
          'the inference server speaks plain HTTP on a network address: inference requests and ' +
            'responses cross the network unencrypted; set serve.tls in the local policy',
        );
      }
      return port;
    })().catch((err: unknown) => {
      this.port = null;
      throw err;
    });
    return endpointFor(host, await this.port, Boolean(tls));
  }

  /** The current deployment of each model name. */
  deployments(): Deployment[] {
    return [...this.current.values()];
  }

  /** The pids of the serve worker processes answering now; empty when the agent serves itself. */
  workerPids(): number[] {
    return this.backend.pids();
  }

  /**
   * Loads `bytes` (already verified) as `name` at `version` and makes it the served version; the
   * deployment it replaces, if any, is told. When the load fails, what was served stays served.
   */
  deploy(id: string, name: string, version: string, bytes: Uint8Array): Promise<Deployment> {
    return this.serialize(name, async () => {
      let provider: ExecutionProvider | null;
      try {
        provider = await this.backend.replace(name, version, bytes);
      } catch (err) {
        // A first load that failed leaves the name FAILED (server not ready): take it away again.
        if (!this.current.has(name)) await this.backend.unload(name);
        throw err;
      }
      const deployment = new Deployment(id, name, version, provider ?? 'cpu');
      const previous = this.current.get(name);
      this.current.set(name, deployment);
      previous?.markReplaced(version);
      return deployment;
    });
  }

  /** Stops serving the deployment's model, once its requests in flight are done; a no-op once replaced. */
  undeploy(deployment: Deployment): Promise<void> {
    return this.serialize(deployment.name, async () => {
      if (this.current.get(deployment.name) !== deployment) return;
      this.current.delete(deployment.name);
      await this.backend.unload(deployment.name);
    });
  }

  /**
   * The deployment's request numbers (since its version started serving; latency over the window).
   * Serve workers send theirs every quarter second, and all of them before an undeploy completes.
   */
  metricsOf(deployment: Deployment): ServeMetricsMessage {
    const snapshot = this.metrics.snapshot();
    const model = snapshot.models.find(
      (m) => m.model === deployment.name && m.version === deployment.version,
    );
    const ms = (value: number | undefined) => (value === undefined ? null : Math.round(value * 1000) / 1000);
    return {
      windowSeconds: snapshot.windowSeconds,
      requests: model?.requests ?? 0,
      errors: model?.errors ?? 0,
      clientErrors: model?.clientErrors ?? 0,
      p50Ms: ms(model?.latencyMs?.p50),
      p95Ms: ms(model?.latencyMs?.p95),
      p99Ms: ms(model?.latencyMs?.p99),
    };
  }

  /** Drops a finished deployment's numbers, unless its version is served again by another. */
  forgetMetrics(deployment: Deployment): void {
    if (this.current.get(deployment.name)?.version !== deployment.version) {
      this.metrics.remove(deployment.name, deployment.version);
      this.options.observer?.forget(deployment.name, deployment.version);
    }
  }

  /** Stops the server (requests in flight finish, up to graceMs) and unloads every model. */
  async close(options: { force?: boolean } = {}): Promise<void> {
    this.closed = true;
    await this.port?.catch(() => null);
    await this.backend.close(options);
  }

  private serialize<T>(name: string, op: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(name) ?? Promise.resolve()).then(op, op);
    const tail = run.catch(() => undefined);
    this.queues.set(name, tail);
    void tail.then(() => {
      if (this.queues.get(name) === tail) this.queues.delete(name);
    });
    return run;
  }
}

/** The base URL clients use: the listening host, or this machine's name when it listens on all. */
export function endpointFor(host: string, port: number, tls = false): string {
  const any = host === '0.0.0.0' || host === '::' || host === '[::]';
  const name = any ? os.hostname() : host;
  const scheme = tls ? 'https' : 'http';
  return `${scheme}://${name.includes(':') && !name.startsWith('[') ? `[${name}]` : name}:${port}`;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);
}

/** The server in the agent's own process: one event loop, one session per model. */
class InProcessServer implements ServeBackend {
  private readonly repository: ModelRepository;
  private server: OipServer | null = null;

  constructor(
    private readonly options: ServeHostOptions,
    private readonly metrics: MetricsSink,
  ) {
    // ONNX Runtime loads with the first deployment, not with the agent: an agent that only runs
    // commands stays small, and every fork for a command copies the agent's page tables.
    const loadSession =
      options.loadSession ??
      (async (source) =>
        (await import('./model-session.js')).loadModelSession(source, {
          intraOpThreads: options.threads ?? undefined,
        }));
    this.repository = new ModelRepository({ logger: options.logger, loadSession });
  }

  async start(): Promise<number> {
    const { limitOptions, startOipServer } = await import('./oip-server.js');
    this.server = await startOipServer({
      host: this.options.address.host,
      port: this.options.address.port,
      tls: this.options.address.tls ?? null,
      ...limitOptions(this.options.address.limits),
      repository: this.repository,
      metrics: this.metrics,
      logger: this.options.logger,
    });
    return this.server.port;
  }

  async replace(name: string, version: string, bytes: Uint8Array): Promise<ExecutionProvider | null> {
    return (await this.repository.replace(name, version, bytes)).executionProvider;
  }

  unload(name: string): Promise<void> {
    return this.repository.unload(name);
  }

  pids(): number[] {
    return [];
  }

  async close(options: { force?: boolean }): Promise<void> {
    await this.server?.close(options.force ? 0 : 10_000);
    await this.repository.close(options);
  }
}
