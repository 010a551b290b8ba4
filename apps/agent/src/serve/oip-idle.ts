/**
 * Reads and writes in progress that must not stall: each is given up (its `onIdle` runs) once it
 * has made no progress for its limit. One interval timer checks them all, instead of a timer per
 * request: setting the socket's own timeout for the body and again for the response cost about a
 * third of what the server itself does for a 1-row inference (bench/serve).
 */
export class IdleWatch {
  private readonly entries = new Map<object, { last: number; limitMs: number; onIdle: () => void }>();
  private readonly timer: NodeJS.Timeout;

  /** `checkMs`: how often stalls are looked for, so how late past its limit one may be seen. */
  constructor(checkMs: number) {
    this.timer = setInterval(() => this.check(), checkMs);
    this.timer.unref();
  }

  watch(key: object, limitMs: number, onIdle: () => void): void {
    this.entries.set(key, { last: Date.now(), limitMs, onIdle });
  }

  /** It made progress. */
  touch(key: object): void {
    const entry = this.entries.get(key);
    if (entry) entry.last = Date.now();
  }

  unwatch(key: object): void {
    this.entries.delete(key);
  }

  close(): void {
    clearInterval(this.timer);
    this.entries.clear();
  }

  private check(): void {
    const now = Date.now();
    for (const [key, entry] of this.entries) {
      if (now - entry.last < entry.limitMs) continue;
      this.entries.delete(key);
      entry.onIdle();
    }
  }
}
