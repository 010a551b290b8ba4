/** Polls `check` until it returns a value other than undefined/false, or throws after the timeout. */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const { timeoutMs = 20_000, intervalMs = 100, what = 'condition' } = opts;
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      );
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Runs `run` with a signal that aborts with `reason` after `cancelAfterMs`, watching this process's
 * event loop with a 20 ms timer meanwhile: how it settled, how long it took, and the longest the
 * timer waited (what a heartbeat would have waited).
 */
export async function cancelledWhileWatched(
  run: (signal: AbortSignal) => Promise<unknown>,
  cancelAfterMs: number,
  reason: unknown,
): Promise<{ settled: 'resolved' | 'rejected'; error: unknown; ms: number; longestGapMs: number }> {
  const cancel = new AbortController();
  const started = performance.now();
  let last = started;
  let longestGapMs = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    longestGapMs = Math.max(longestGapMs, now - last);
    last = now;
  }, 20);
  const timer = setTimeout(() => cancel.abort(reason), cancelAfterMs);
  try {
    await run(cancel.signal);
    return { settled: 'resolved', error: undefined, ms: performance.now() - started, longestGapMs };
  } catch (error) {
    return { settled: 'rejected', error, ms: performance.now() - started, longestGapMs };
  } finally {
    clearInterval(ticker);
    clearTimeout(timer);
  }
}
