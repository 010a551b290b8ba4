/**
 * The bounded, rate-limited tail of a job's output that may go up to the control plane (the full
 * log stays on disk). A token bucket admits lines; lines over the rate or over the pending cap
 * are dropped and counted, long lines are truncated, and batches never exceed the contract's
 * LOG_TAIL bounds.
 */
import { clipText, LOG_TAIL } from '@hearth/contracts';

export type OutputStream = 'stdout' | 'stderr';

export interface TailLine {
  stream: OutputStream;
  text: string;
}

export interface TailBatch {
  lines: TailLine[];
  /** Lines dropped since the previous batch. */
  dropped: number;
}

export interface LogTailOptions {
  /** Sustained lines per second admitted. */
  ratePerSecond: number;
  /** Lines admitted at once after a quiet period. */
  burst: number;
  /** Lines waiting to be sent, at most. */
  maxPending: number;
  now: () => number;
}

export const DEFAULT_LOG_TAIL: LogTailOptions = {
  ratePerSecond: 50,
  burst: 200,
  maxPending: 400,
  now: Date.now,
};

/** A line as the tail carries it: at most `max` characters, NUL and broken UTF-16 replaced (U+FFFD). */
export function truncateLine(text: string, max: number = LOG_TAIL.maxLineChars): string {
  return clipText(text, max);
}

export class LogTail {
  private readonly options: LogTailOptions;
  private tokens: number;
  private refilledAt: number;
  private pending: TailLine[] = [];
  private dropped = 0;
  private droppedTotal = 0;

  constructor(options: Partial<LogTailOptions> = {}) {
    this.options = { ...DEFAULT_LOG_TAIL, ...options };
    this.tokens = this.options.burst;
    this.refilledAt = this.options.now();
  }

  push(stream: OutputStream, text: string): void {
    this.refill();
    if (this.tokens < 1 || this.pending.length >= this.options.maxPending) {
      this.addDropped(1);
      return;
    }
    this.tokens -= 1;
    this.pending.push({ stream, text: truncateLine(text) });
  }

  /** The next batch to send, or null when there is nothing (no lines and nothing dropped). */
  take(): TailBatch | null {
    if (this.pending.length === 0 && this.dropped === 0) return null;
    const lines = this.pending.splice(0, LOG_TAIL.maxLinesPerMessage);
    const dropped = this.dropped;
    this.dropped = 0;
    return { lines, dropped };
  }

  /** A batch that could not be sent: its lines count as dropped, and its dropped count carries on. */
  restore(batch: TailBatch): void {
    this.dropped += batch.dropped;
    this.addDropped(batch.lines.length);
  }

  private addDropped(count: number): void {
    this.dropped += count;
    this.droppedTotal += count;
  }

  get totalDropped(): number {
    return this.droppedTotal;
  }

  private refill(): void {
    const now = this.options.now();
    const elapsed = Math.max(0, now - this.refilledAt) / 1000;
    this.refilledAt = now;
    this.tokens = Math.min(this.options.burst, this.tokens + elapsed * this.options.ratePerSecond);
  }
}
