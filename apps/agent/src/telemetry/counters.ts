/** What went wrong and how often, for logs now and a metrics endpoint later. */
export class AgentCounters {
  invalidDispatch = 0;
  invalidControl = 0;
  claimFailures = 0;
  claimsRefused = 0;
  sendFailures = 0;
  logLinesDropped = 0;
  heartbeatFailures = 0;

  snapshot(): Record<string, number> {
    return Object.fromEntries(
      Object.entries(this).filter((e): e is [string, number] => typeof e[1] === 'number'),
    );
  }
}
