/** What went wrong and how often, and how jobs ended: for the logs and the metrics endpoint. */
export class AgentCounters {
  invalidDispatch = 0;
  invalidControl = 0;
  claimFailures = 0;
  claimsRefused = 0;
  sendFailures = 0;
  logLinesDropped = 0;
  heartbeatFailures = 0;
  telemetrySamples = 0;
  telemetrySampleFailures = 0;
  telemetryBatchesSent = 0;
  telemetrySendFailures = 0;
  /** Samples the telemetry buffer dropped (oldest first) while the control plane was unreachable. */
  telemetryDropped = 0;
  /** Jobs the local policy refused before they were claimed (reported FAILED). */
  jobsRefused = 0;
  /** Progress events given up on after their retries. */
  progressDropped = 0;

  /** Attempts that ran here to an end (refused ones included), by job kind and outcome. */
  private readonly finished = new Map<string, { kind: string; outcome: string; count: number }>();

  jobFinished(kind: string, outcome: string): void {
    const key = `${kind}/${outcome}`;
    const entry = this.finished.get(key);
    if (entry) entry.count += 1;
    else this.finished.set(key, { kind, outcome, count: 1 });
  }

  jobsFinished(): readonly { kind: string; outcome: string; count: number }[] {
    return [...this.finished.values()];
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(
      Object.entries(this).filter((e): e is [string, number] => typeof e[1] === 'number'),
    );
  }
}
