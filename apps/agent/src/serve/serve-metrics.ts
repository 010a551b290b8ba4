/**
 * Request metrics per served model version, for the control plane: counts since the version
 * started serving, and latency percentiles over a sliding window. Numbers only: nothing here can
 * hold a request or response body.
 *
 * Not prom-client: its histograms give buckets, and what the control plane needs is three exact
 * percentiles of recent requests, which a bounded ring of samples gives in a few lines. The
 * agent's own Prometheus endpoint (metrics/agent-metrics.ts) gets the same requests as a histogram.
 */

/** Where the inference server records its requests: ServeMetrics, or a serve worker's batches. */
export interface MetricsSink {
  /** One answered inference request of a served model version. */
  record(model: string, version: string, latencyMs: number, status: number): void;
  /** One inference request for a model name that is not served. */
  recordUnrouted(): void;
}

/** A sink that records into each of `sinks`, in order. */
export function teeSink(...sinks: readonly MetricsSink[]): MetricsSink {
  return {
    record(model, version, latencyMs, status) {
      for (const sink of sinks) sink.record(model, version, latencyMs, status);
    },
    recordUnrouted() {
      for (const sink of sinks) sink.recordUnrouted();
    },
  };
}

export interface LatencyPercentiles {
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
}

export interface ModelMetricsSnapshot {
  readonly model: string;
  readonly version: string;
  /** Inference requests answered since this version started serving. */
  readonly requests: number;
  /** Of those, the ones answered with an error status (4xx or 5xx). */
  readonly errors: number;
  /** Of the errors, the ones that were the client's mistake (4xx). */
  readonly clientErrors: number;
  /** Of the errors, the ones that were the server's fault (5xx). */
  readonly serverErrors: number;
  /**
   * Over the requests of the last window (at most `maxSamples` of the latest) that the model was
   * asked to answer: 2xx and 5xx. A refused request (4xx) says nothing about the model's speed, and
   * any client can send thousands of them to push real latencies out of the window.
   */
  readonly latencyMs: LatencyPercentiles | null;
  /** How many requests latencyMs was computed from. */
  readonly windowRequests: number;
}

export interface ServeMetricsSnapshot {
  readonly windowSeconds: number;
  readonly models: readonly ModelMetricsSnapshot[];
  /** Inference requests for model names that are not served (not counted per model). */
  readonly unroutedRequests: number;
}

export interface ServeMetricsOptions {
  /** Default 60 s. */
  windowSeconds?: number;
  /** Ring size per model version; default 2048. */
  maxSamples?: number;
  now?: () => number;
}

class Series {
  requests = 0;
  errors = 0;
  clientErrors = 0;
  serverErrors = 0;
  private readonly at: Float64Array;
  private readonly latency: Float64Array;
  private next = 0;
  private size = 0;

  constructor(capacity: number) {
    this.at = new Float64Array(capacity);
    this.latency = new Float64Array(capacity);
  }

  add(atMs: number, latencyMs: number): void {
    this.at[this.next] = atMs;
    this.latency[this.next] = latencyMs;
    this.next = (this.next + 1) % this.at.length;
    this.size = Math.min(this.size + 1, this.at.length);
  }

  since(fromMs: number): Float64Array {
    const values: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.at[i] >= fromMs) values.push(this.latency[i]);
    return Float64Array.from(values).sort();
  }
}

export class ServeMetrics implements MetricsSink {
  private readonly series = new Map<string, Series>();
  private readonly windowMs: number;
  private readonly maxSamples: number;
  private readonly now: () => number;
  private unrouted = 0;

  constructor(options: ServeMetricsOptions = {}) {
    this.windowMs = (options.windowSeconds ?? 60) * 1000;
    this.maxSamples = options.maxSamples ?? 2048;
    this.now = options.now ?? Date.now;
  }

  /** One answered inference request of a served model version. */
  record(model: string, version: string, latencyMs: number, status: number): void {
    const key = seriesKey(model, version);
    let series = this.series.get(key);
    if (!series) {
      series = new Series(this.maxSamples);
      this.series.set(key, series);
    }
    series.requests += 1;
    if (status >= 400) series.errors += 1;
    if (status >= 500) series.serverErrors += 1;
    if (status >= 400 && status < 500) series.clientErrors += 1;
    else series.add(this.now(), latencyMs);
  }

  /** One inference request for a model name that is not served. */
  recordUnrouted(): void {
    this.unrouted += 1;
  }

  /** Forgets a version's numbers (e.g. once its last snapshot after it was replaced has been sent). */
  remove(model: string, version: string): void {
    this.series.delete(seriesKey(model, version));
  }

  snapshot(): ServeMetricsSnapshot {
    const from = this.now() - this.windowMs;
    const models = [...this.series].map(([key, series]) => {
      const [model, version] = JSON.parse(key) as [string, string];
      const window = series.since(from);
      return {
        model,
        version,
        requests: series.requests,
        errors: series.errors,
        clientErrors: series.clientErrors,
        serverErrors: series.serverErrors,
        latencyMs:
          window.length === 0
            ? null
            : { p50: percentile(window, 0.5), p95: percentile(window, 0.95), p99: percentile(window, 0.99) },
        windowRequests: window.length,
      };
    });
    return { windowSeconds: this.windowMs / 1000, models, unroutedRequests: this.unrouted };
  }
}

/** Nearest-rank percentile of sorted values: the smallest value with at least q of them at or below it. */
export function percentile(sorted: Float64Array, q: number): number {
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1];
}

const seriesKey = (model: string, version: string) => JSON.stringify([model, version]);
