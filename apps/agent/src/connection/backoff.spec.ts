import { describe, expect, it } from '@jest/globals';
import { backoffDelay, sleep } from './backoff.js';

describe('backoffDelay', () => {
  const policy = { initialMs: 100, maxMs: 5000 };

  it('stays within [ceiling/2, ceiling] of an exponential ceiling capped at max', () => {
    for (let attempt = 0; attempt < 50; attempt++) {
      const ceiling = Math.min(5000, 100 * 2 ** attempt);
      for (const r of [0, 0.25, 0.5, 0.999999, Math.random()]) {
        const delay = backoffDelay(attempt, policy, () => r);
        expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
        expect(delay).toBeLessThanOrEqual(ceiling);
      }
    }
  });

  it('grows with the attempt and is capped', () => {
    const low = () => 0;
    expect(backoffDelay(0, policy, low)).toBe(50);
    expect(backoffDelay(3, policy, low)).toBe(400);
    expect(backoffDelay(1000, policy, low)).toBe(2500);
    expect(backoffDelay(1000, policy, () => 1)).toBe(5000);
  });

  it('is jittered: retries of many agents do not line up', () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(6, policy)));
    expect(delays.size).toBeGreaterThan(10);
  });
});

describe('sleep', () => {
  it('resolves true after the time', async () => {
    await expect(sleep(5)).resolves.toBe(true);
  });

  it('resolves false at once when aborted', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const pending = sleep(10_000, controller.signal);
    controller.abort();
    await expect(pending).resolves.toBe(false);
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(sleep(10_000, controller.signal)).resolves.toBe(false);
  });
});
