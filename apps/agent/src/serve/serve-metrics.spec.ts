import { describe, expect, it } from '@jest/globals';
import { ServeMetrics, percentile } from './serve-metrics.js';

describe('percentile', () => {
  it('is the nearest rank', () => {
    const values = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 0.5)).toBe(50);
    expect(percentile(values, 0.95)).toBe(95);
    expect(percentile(values, 0.99)).toBe(99);
    expect(percentile(Float64Array.of(7), 0.99)).toBe(7);
    expect(percentile(Float64Array.of(1, 2, 3), 0.5)).toBe(2);
  });
});

describe('ServeMetrics', () => {
  it('counts requests and errors per model version and reports latency percentiles', () => {
    const metrics = new ServeMetrics({ now: () => 1000 });
    // 1…100 ms, plus two 5 ms errors of which only the 503 is a latency the model had: ranks 1-5
    // are 1-5, rank 6 is 5, rank r ≥ 7 is r - 1.
    for (let ms = 1; ms <= 100; ms++) metrics.record('iris', '1', ms, 200);
    metrics.record('iris', '1', 5, 400);
    metrics.record('iris', '1', 5, 503);
    metrics.record('iris', '2', 3, 200);
    metrics.recordUnrouted();

    const snapshot = metrics.snapshot();
    expect(snapshot.unroutedRequests).toBe(1);
    expect(snapshot.windowSeconds).toBe(60);
    expect(snapshot.models).toEqual([
      {
        model: 'iris',
        version: '1',
        requests: 102,
        errors: 2,
        clientErrors: 1,
        serverErrors: 1,
        latencyMs: { p50: 50, p95: 95, p99: 99 },
        windowRequests: 101,
      },
      {
        model: 'iris',
        version: '2',
        requests: 1,
        errors: 0,
        clientErrors: 0,
        serverErrors: 0,
        latencyMs: { p50: 3, p95: 3, p99: 3 },
        windowRequests: 1,
      },
    ]);
  });

  it('keeps refused requests out of the latencies: a flood of 4xx cannot hide how the model answers', () => {
    const metrics = new ServeMetrics({ now: () => 0 });
    for (let i = 0; i < 40; i++) metrics.record('m', 'v', 6 + i, 200);
    for (let i = 0; i < 2400; i++) metrics.record('m', 'v', 0.09, 400);
    expect(metrics.snapshot().models[0]).toEqual({
      model: 'm',
      version: 'v',
      requests: 2440,
      errors: 2400,
      clientErrors: 2400,
      serverErrors: 0,
      latencyMs: { p50: 25, p95: 43, p99: 45 },
      windowRequests: 40,
    });
  });

  it('computes latency over the window only, while counts keep growing', () => {
    let now = 0;
    const metrics = new ServeMetrics({ windowSeconds: 10, now: () => now });
    metrics.record('m', 'v', 500, 200);
    now = 5_000;
    metrics.record('m', 'v', 10, 200);
    expect(metrics.snapshot().models[0]).toMatchObject({ requests: 2, windowRequests: 2 });

    now = 12_000; // the 500 ms request is now older than the window
    expect(metrics.snapshot().models[0]).toMatchObject({
      requests: 2,
      windowRequests: 1,
      latencyMs: { p50: 10, p95: 10, p99: 10 },
    });

    now = 60_000;
    expect(metrics.snapshot().models[0]).toMatchObject({ requests: 2, windowRequests: 0, latencyMs: null });
  });

  it('keeps only the latest samples when the window holds more than the ring', () => {
    const metrics = new ServeMetrics({ maxSamples: 4, now: () => 0 });
    for (const ms of [100, 100, 100, 1, 2, 3, 4]) metrics.record('m', 'v', ms, 200);
    expect(metrics.snapshot().models[0]).toMatchObject({
      requests: 7,
      windowRequests: 4,
      latencyMs: { p50: 2, p95: 4, p99: 4 },
    });
  });

  it('forgets a removed version', () => {
    const metrics = new ServeMetrics();
    metrics.record('m', '1', 1, 200);
    metrics.record('m', '2', 1, 200);
    metrics.remove('m', '1');
    expect(metrics.snapshot().models.map((m) => m.version)).toEqual(['2']);
  });

  it('holds numbers only: a snapshot survives JSON and has no strings but names', () => {
    const metrics = new ServeMetrics();
    metrics.record('m', 'v', 12.5, 200);
    const snapshot = metrics.snapshot();
    expect(JSON.parse(JSON.stringify(snapshot))).toEqual(snapshot);
    const strings: string[] = [];
    JSON.stringify(snapshot, (_key, value: unknown) => {
      if (typeof value === 'string') strings.push(value);
      return value;
    });
    expect(strings).toEqual(['m', 'v']);
  });
});
