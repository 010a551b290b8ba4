import { describe, expect, it } from '@jest/globals';
import { metricValue, parsePrometheus } from '@hearth/testing';
import type { EgressTotals } from '../egress/ledger.js';
import type { AttemptState } from '../executor/attempts.js';
import { AgentCounters } from '../telemetry/counters.js';
import { AgentMetrics, type AgentMetricsSources } from './agent-metrics.js';

/** The agent's state as the sources report it, changed by each test. */
function world() {
  const state = {
    attempts: [] as { kind: string; state: AttemptState }[],
    connected: true,
    egress: new Map<string, EgressTotals>(),
    served: [] as { name: string; version: string; executionProvider: string }[],
    workers: 0,
  };
  const counters = new AgentCounters();
  const sources: AgentMetricsSources = {
    agentId: 'agent-1',
    version: '9.9.9',
    counters,
    attempts: () => state.attempts,
    connected: () => state.connected,
    egress: () => state.egress,
    served: () => state.served,
    serveWorkers: () => state.workers,
  };
  const metrics = new AgentMetrics(sources);
  const scrape = async () => parsePrometheus(await metrics.text());
  return { state, counters, metrics, scrape };
}

describe('AgentMetrics', () => {
  it('reads the agent’s state at each scrape: connection, attempts, finished jobs, counters, egress', async () => {
    const { state, counters, scrape } = world();
    let samples = await scrape();
    expect(metricValue(samples, 'hearth_agent_info', { agent_id: 'agent-1', version: '9.9.9' })).toBe(1);
    expect(metricValue(samples, 'hearth_agent_nats_connected')).toBe(1);
    expect(metricValue(samples, 'hearth_agent_attempts', { kind: 'command' })).toBeUndefined();
    expect(metricValue(samples, 'hearth_agent_claims_refused_total')).toBe(0);
    expect(metricValue(samples, 'process_resident_memory_bytes')).toBeGreaterThan(0);

    state.connected = false;
    state.attempts = [
      { kind: 'command', state: 'running' },
      { kind: 'command', state: 'running' },
      { kind: 'train', state: 'claiming' },
    ];
    counters.jobFinished('command', 'SUCCEEDED');
    counters.jobFinished('command', 'SUCCEEDED');
    counters.jobFinished('train', 'FAILED');
    counters.claimsRefused = 3;
    counters.invalidDispatch = 2;
    counters.invalidControl = 1;
    state.egress.set('job.finished', { messages: 4, bytes: 1200 });
    samples = await scrape();
    expect(metricValue(samples, 'hearth_agent_nats_connected')).toBe(0);
    expect(metricValue(samples, 'hearth_agent_attempts', { kind: 'command', state: 'running' })).toBe(2);
    expect(metricValue(samples, 'hearth_agent_attempts', { kind: 'train', state: 'claiming' })).toBe(1);
    expect(
      metricValue(samples, 'hearth_agent_jobs_finished_total', { kind: 'command', outcome: 'SUCCEEDED' }),
    ).toBe(2);
    expect(
      metricValue(samples, 'hearth_agent_jobs_finished_total', { kind: 'train', outcome: 'FAILED' }),
    ).toBe(1);
    expect(metricValue(samples, 'hearth_agent_claims_refused_total')).toBe(3);
    expect(metricValue(samples, 'hearth_agent_invalid_messages_total', { channel: 'dispatch' })).toBe(2);
    expect(metricValue(samples, 'hearth_agent_invalid_messages_total', { channel: 'control' })).toBe(1);
    expect(metricValue(samples, 'hearth_agent_egress_messages_total', { type: 'job.finished' })).toBe(4);
    expect(metricValue(samples, 'hearth_agent_egress_bytes_total', { type: 'job.finished' })).toBe(1200);

    // Attempts that are gone are no longer counted (the gauge is rebuilt at each scrape).
    state.attempts = [];
    samples = await scrape();
    expect(samples.filter((s) => s.name === 'hearth_agent_attempts')).toEqual([]);
  });

  it('exposes every counter the agent keeps', async () => {
    const { counters, scrape } = world();
    const fields = Object.keys(counters.snapshot());
    expect(fields.length).toBeGreaterThan(10);
    for (const field of fields) (counters as unknown as Record<string, number>)[field] = 7;
    const samples = await scrape();
    const sevens = samples.filter((s) => s.name.startsWith('hearth_agent_') && s.value === 7);
    expect(sevens).toHaveLength(fields.length);
  });

  it('counts inference requests by model, version and status, with their latencies as a histogram', async () => {
    const { state, metrics, scrape } = world();
    state.served = [{ name: 'price', version: '2', executionProvider: 'cpu' }];
    state.workers = 2;
    for (const ms of [0.2, 0.8, 3, 40]) metrics.record('price', '2', ms, 200);
    metrics.record('price', '2', 0.1, 400);
    metrics.record('price', '1', 2, 200);
    metrics.recordUnrouted();
    let samples = await scrape();
    const price2 = { model: 'price', version: '2' };
    expect(metricValue(samples, 'hearth_agent_serve_requests_total', { ...price2, code: '200' })).toBe(4);
    expect(metricValue(samples, 'hearth_agent_serve_requests_total', { ...price2, code: '400' })).toBe(1);
    expect(metricValue(samples, 'hearth_agent_serve_request_duration_seconds_count', price2)).toBe(5);
    expect(metricValue(samples, 'hearth_agent_serve_request_duration_seconds_sum', price2)).toBeCloseTo(
      0.0441,
      10,
    );
    const bucket = (le: string) =>
      metricValue(samples, 'hearth_agent_serve_request_duration_seconds_bucket', { ...price2, le });
    expect(bucket('0.00025')).toBe(2); // 0.1 and 0.2 ms
    expect(bucket('0.001')).toBe(3);
    expect(bucket('0.005')).toBe(4);
    expect(bucket('0.05')).toBe(5);
    expect(bucket('+Inf')).toBe(5);
    expect(metricValue(samples, 'hearth_agent_serve_unrouted_requests_total')).toBe(1);
    // The unrouted count has no label: the model name in such a request is the client's.
    expect(samples.find((s) => s.name === 'hearth_agent_serve_unrouted_requests_total')?.labels).toEqual({});
    expect(metricValue(samples, 'hearth_agent_serve_models', { ...price2, provider: 'cpu' })).toBe(1);
    expect(metricValue(samples, 'hearth_agent_serve_workers')).toBe(2);

    // A replaced version's series go; the one still served keeps its own.
    metrics.forget('price', '1');
    samples = await scrape();
    expect(samples.filter((s) => s.labels.model === 'price' && s.labels.version === '1')).toEqual([]);
    expect(metricValue(samples, 'hearth_agent_serve_requests_total', { ...price2, code: '200' })).toBe(4);
  });
});
