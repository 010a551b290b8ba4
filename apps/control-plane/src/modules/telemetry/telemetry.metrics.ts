import { Counter, Histogram } from 'prom-client';
import { registry } from '../../platform/metrics/metrics.js';

export const telemetrySamples = new Counter({
  name: 'hearth_telemetry_samples_total',
  help: 'Telemetry samples written (host samples, and GPU samples within them).',
  labelNames: ['kind'] as const,
  registers: [registry],
});

export const telemetryDroppedByAgents = new Counter({
  name: 'hearth_telemetry_dropped_by_agents_total',
  help: 'Samples agents report they dropped (their buffer was full while the control plane was unreachable).',
  registers: [registry],
});

export const telemetryLeftOut = new Counter({
  name: 'hearth_telemetry_left_out_total',
  help: 'Parts of accepted messages left out: samples outside the time range, references to jobs the agent did not run, or not at the time of the sample (the reading is kept with no job).',
  labelNames: ['reason'] as const,
  registers: [registry],
});

export const telemetryLag = new Histogram({
  name: 'hearth_telemetry_ingest_lag_seconds',
  help: "From a message's newest sample being taken on the agent to its rows committed in Postgres.",
  buckets: [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300],
  registers: [registry],
});

export const telemetryFlush = new Histogram({
  name: 'hearth_telemetry_flush_seconds',
  help: 'Time to write one ingest batch (lookups and the insert transaction).',
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
  registers: [registry],
});
