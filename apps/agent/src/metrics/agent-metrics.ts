/**
 * The agent's Prometheus metrics, for the customer's own monitoring (served by metrics-server.ts):
 * the agent process, its NATS connection, the jobs it runs, what its egress guard let out, and
 * the inference server's requests. Every value is a count, a duration or a name the control plane
 * gave (model, version, job kind, message type): never a request, a dataset or a job's output.
 * Nothing here is sent anywhere; Prometheus inside the customer's network scrapes it.
 *
 * Most numbers already exist elsewhere (AgentCounters, the ledger, the attempt registry) and are
 * read when Prometheus scrapes; only inference requests are pushed here, one observation each,
 * because a histogram needs every latency.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EgressTotals } from '../egress/ledger.js';
import type { AttemptState } from '../executor/attempts.js';
import type { ServeObserver } from '../serve/serve-host.js';
import type { AgentCounters } from '../telemetry/counters.js';

/** Where the metrics read the agent's state, at each scrape. */
export interface AgentMetricsSources {
  readonly agentId: string;
  readonly version: string;
  readonly counters: AgentCounters;
  /** The job attempts the agent holds now. */
  attempts(): Iterable<{ kind: string; state: AttemptState }>;
  /** Whether the NATS connection is up. */
  connected(): boolean;
  /** What the egress ledger recorded, by message type. */
  egress(): ReadonlyMap<string, Readonly<EgressTotals>>;
  /** The model versions being served, with the execution provider each runs on. */
  served(): Iterable<{ name: string; version: string; executionProvider: string }>;
  /** Serve worker processes answering now (0: the agent serves in its own process, or not at all). */
  serveWorkers(): number;
}

type CounterField = {
  [K in keyof AgentCounters]: AgentCounters[K] extends number ? K : never;
}[keyof AgentCounters];

/**
 * Each of AgentCounters' numbers as a Prometheus counter (the type makes a new field without a
 * metric a compile error). Fields that share a name are one metric told apart by their label.
 */
const COUNTERS: Record<CounterField, { name: string; help: string; label?: [string, string] }> = {
  invalidDispatch: {
    name: 'hearth_agent_invalid_messages_total',
    help: 'Messages from the control plane that failed their schema and were dropped, by channel.',
    label: ['channel', 'dispatch'],
  },
  invalidControl: {
    name: 'hearth_agent_invalid_messages_total',
    help: 'Messages from the control plane that failed their schema and were dropped, by channel.',
    label: ['channel', 'control'],
  },
  claimFailures: {
    name: 'hearth_agent_claim_failures_total',
    help: 'Claims of a dispatched attempt that got no answer from the control plane (retried).',
  },
  claimsRefused: {
    name: 'hearth_agent_claims_refused_total',
    help: 'Dispatched attempts the control plane refused to let start (cancelled, stale or re-dispatched).',
  },
  sendFailures: {
    name: 'hearth_agent_send_failures_total',
    help: 'Job events the agent could not send (retried until acknowledged).',
  },
  logLinesDropped: {
    name: 'hearth_agent_log_lines_dropped_total',
    help: 'Job log lines kept only on this machine because the tail sent upstream is rate-limited.',
  },
  heartbeatFailures: {
    name: 'hearth_agent_heartbeat_failures_total',
    help: 'Heartbeats that could not be sent.',
  },
  telemetrySamples: {
    name: 'hearth_agent_telemetry_samples_total',
    help: 'Hardware utilisation samples taken.',
  },
  telemetrySampleFailures: {
    name: 'hearth_agent_telemetry_sample_failures_total',
    help: 'Hardware utilisation samples that failed (a collector errored).',
  },
  telemetryBatchesSent: {
    name: 'hearth_agent_telemetry_batches_sent_total',
    help: 'Telemetry batches acknowledged by the control plane.',
  },
  telemetrySendFailures: {
    name: 'hearth_agent_telemetry_send_failures_total',
    help: 'Telemetry batches that could not be sent (kept and retried).',
  },
  telemetryDropped: {
    name: 'hearth_agent_telemetry_samples_dropped_total',
    help: 'Telemetry samples dropped, oldest first, while the control plane was unreachable.',
  },
  jobsRefused: {
    name: 'hearth_agent_jobs_refused_total',
    help: 'Jobs the local policy refused before they were claimed (reported FAILED).',
  },
  progressDropped: {
    name: 'hearth_agent_progress_events_dropped_total',
    help: 'Job progress events given up on after their retries.',
  },
};

/**
 * Latency buckets of the inference histogram, in seconds: from 100 µs (a small tabular model on
 * a fast host) to 10 s (a large model on a CPU).
 */
const SERVE_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export class AgentMetrics implements ServeObserver {
  readonly registry = new Registry();
  private readonly requests: Counter<'model' | 'version' | 'code'>;
  private readonly duration: Histogram<'model' | 'version'>;
  private readonly unrouted: Counter;
  /**
   * Every status code answered so far (a handful): forget() removes a version's series by exact
   * labels, and removing one that never existed is harmless.
   */
  private readonly codes = new Set<string>();

  constructor(sources: AgentMetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });

    new Gauge({
      name: 'hearth_agent_info',
      help: 'Always 1; its labels name the agent and its version.',
      labelNames: ['agent_id', 'version'] as const,
      registers,
    }).set({ agent_id: sources.agentId, version: sources.version }, 1);
    new Gauge({
      name: 'hearth_agent_nats_connected',
      help: '1 while the connection to the control plane (NATS) is up, else 0.',
      registers,
      collect() {
        this.set(sources.connected() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'hearth_agent_attempts',
      help: 'Job attempts held now, by job kind and state (claiming, running, reporting).',
      labelNames: ['kind', 'state'] as const,
      registers,
      collect() {
        this.reset();
        for (const { kind, state } of sources.attempts()) this.inc({ kind, state });
      },
    });
    new Counter({
      name: 'hearth_agent_jobs_finished_total',
      help: 'Job attempts that ended on this agent, by job kind and outcome (refused ones are FAILED).',
      labelNames: ['kind', 'outcome'] as const,
      registers,
      collect() {
        this.reset();
        for (const { kind, outcome, count } of sources.counters.jobsFinished())
          this.inc({ kind, outcome }, count);
      },
    });

    const byName = new Map<string, { help: string; fields: CounterField[] }>();
    for (const field of Object.keys(COUNTERS) as CounterField[]) {
      const { name, help } = COUNTERS[field];
      const entry = byName.get(name) ?? { help, fields: [] };
      entry.fields.push(field);
      byName.set(name, entry);
    }
    for (const [name, { help, fields }] of byName) {
      const labelNames = [...new Set(fields.flatMap((f) => COUNTERS[f].label?.[0] ?? []))];
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const field of fields) {
            const label = COUNTERS[field].label;
            const value = sources.counters[field];
            if (label) this.inc({ [label[0]]: label[1] }, value);
            else this.inc(value);
          }
        },
      });
    }

    const egress: [string, string, keyof EgressTotals][] = [
      [
        'hearth_agent_egress_messages_total',
        'Messages the egress guard let out to the control plane (each one is in the local ledger), by type.',
        'messages',
      ],
      ['hearth_agent_egress_bytes_total', 'Payload bytes of those messages, by type.', 'bytes'],
    ];
    for (const [name, help, field] of egress) {
      new Counter({
        name,
        help,
        labelNames: ['type'] as const,
        registers,
        collect() {
          this.reset();
          for (const [type, totals] of sources.egress()) this.inc({ type }, totals[field]);
        },
      });
    }

    new Gauge({
      name: 'hearth_agent_serve_models',
      help: 'Model versions being served: 1 per version, labelled with the execution provider it runs on.',
      labelNames: ['model', 'version', 'provider'] as const,
      registers,
      collect() {
        this.reset();
        for (const d of sources.served()) {
          this.set({ model: d.name, version: d.version, provider: d.executionProvider }, 1);
        }
      },
    });
    new Gauge({
      name: 'hearth_agent_serve_workers',
      help: 'Serve worker processes answering inference requests (0 when the agent answers them itself).',
      registers,
      collect() {
        this.set(sources.serveWorkers());
      },
    });
    this.requests = new Counter({
      name: 'hearth_agent_serve_requests_total',
      help: 'Inference requests answered, by model, version and HTTP status code.',
      labelNames: ['model', 'version', 'code'] as const,
      registers,
    });
    this.duration = new Histogram({
      name: 'hearth_agent_serve_request_duration_seconds',
      help: 'Time from an inference request arriving to its answer being written, by model and version.',
      labelNames: ['model', 'version'] as const,
      buckets: SERVE_BUCKETS,
      registers,
    });
    this.unrouted = new Counter({
      name: 'hearth_agent_serve_unrouted_requests_total',
      help: 'Inference requests for a model name that is not served (not labelled: the name is the client’s).',
      registers,
    });
  }

  record(model: string, version: string, latencyMs: number, status: number): void {
    const code = String(status);
    this.codes.add(code);
    this.requests.inc({ model, version, code });
    this.duration.observe({ model, version }, latencyMs / 1000);
  }

  recordUnrouted(): void {
    this.unrouted.inc();
  }

  /** Drops a version's request series once it is no longer served. */
  forget(model: string, version: string): void {
    for (const code of this.codes) this.requests.remove({ model, version, code });
    this.duration.remove({ model, version });
  }

  /** The exposition text, as GET /metrics answers it. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
