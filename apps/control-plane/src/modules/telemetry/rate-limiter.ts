/**
 * Per-agent token buckets for telemetry ingest: an agent may send a burst (a backfill after an outage)
 * and then a steady rate; beyond that its samples are refused before they cost a decode or a row, so a
 * flooding agent cannot slow the others down. The buckets are this replica's own (N replicas admit
 * up to N times the rate); nothing depends on them but the refusal itself.
 */
export interface RateLimit {
  /** Samples an agent may send at once. */
  burst: number;
  /** Samples per second it may send after that. */
  perSecond: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Buckets not touched for this long are forgotten (a full bucket is the same as none). */
const IDLE_MS = 10 * 60_000;

export class AgentRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep = 0;

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether the agent has any allowance left (checked before decoding its message). */
  hasAllowance(agentId: string): boolean {
    return this.refill(agentId).tokens >= 1;
  }

  /** Takes `samples` from the agent's bucket; false (and nothing taken) when it has fewer. */
  take(agentId: string, samples: number): boolean {
    const bucket = this.refill(agentId);
    if (bucket.tokens < samples) return false;
    bucket.tokens -= samples;
    return true;
  }

  private refill(agentId: string): Bucket {
    const now = this.now();
    if (now - this.lastSweep > IDLE_MS) this.sweep(now);
    let bucket = this.buckets.get(agentId);
    if (!bucket) {
      bucket = { tokens: this.limit.burst, at: now };
      this.buckets.set(agentId, bucket);
      return bucket;
    }
    const earned = ((now - bucket.at) / 1000) * this.limit.perSecond;
    bucket.tokens = Math.min(this.limit.burst, bucket.tokens + earned);
    bucket.at = now;
    return bucket;
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [agentId, bucket] of this.buckets) if (now - bucket.at > IDLE_MS) this.buckets.delete(agentId);
  }
}
