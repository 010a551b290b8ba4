/** What went wrong and how often, for logs now and a metrics endpoint later. */
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

  snapshot(): Record<string, number> {
    return Object.fromEntries(
      Object.entries(this).filter((e): e is [string, number] => typeof e[1] === 'number'),
    );
  }
}
