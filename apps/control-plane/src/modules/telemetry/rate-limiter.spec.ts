import { describe, expect, it } from '@jest/globals';
import { AgentRateLimiter } from './rate-limiter.js';

describe('AgentRateLimiter', () => {
  it('allows a burst, then the steady rate, per agent', () => {
    let now = 0;
    const limiter = new AgentRateLimiter({ burst: 100, perSecond: 2 }, () => now);
    expect(limiter.take('a', 100)).toBe(true);
    expect(limiter.hasAllowance('a')).toBe(false);
    expect(limiter.take('a', 1)).toBe(false);
    // Another agent is not affected by the first one's flood.
    expect(limiter.take('b', 60)).toBe(true);
    now += 5000;
    expect(limiter.take('a', 10)).toBe(true);
    expect(limiter.take('a', 1)).toBe(false);
    now += 3_600_000;
    expect(limiter.take('a', 100)).toBe(true);
    expect(limiter.take('a', 1)).toBe(false);
  });

  it('takes nothing from a bucket that cannot pay in full', () => {
    const limiter = new AgentRateLimiter({ burst: 10, perSecond: 1 }, () => 0);
    expect(limiter.take('a', 11)).toBe(false);
    expect(limiter.take('a', 10)).toBe(true);
  });
});
