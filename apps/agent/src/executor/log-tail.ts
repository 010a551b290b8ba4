/**
 * The bounded, rate-limited tail of a job's output that may go up to the control plane (the full
 * log stays on disk). A token bucket admits lines; lines over the rate or over the pending cap
 * are dropped and counted, long lines are truncated, and batches never exceed the contract's
 * LOG_TAIL bounds nor its message size.
 */
import { clipText, INT32_MAX, LOG_TAIL, MAX_MESSAGE_BYTES } from '@hearth/contracts';
import type { LineGate } from './line-splitter.js';

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

/**
 * Encoded bytes a batch's lines may take. The cap is on bytes, not characters: a line of 1024
 * units is up to 3 KiB in UTF-8 (U+2588 bars, CJK) or 6 KiB of JSON escapes (control characters),
 * so 50 of them can pass 64 KiB. The rest is room for the envelope (ids, seq, dropped).
 */
const LINES_BUDGET_BYTES = MAX_MESSAGE_BYTES - 8 * 1024;

/**
 * Lines the rate limit dropped at the very end of the output that still go up when it ends: a
 * job's last lines (its traceback, its final error) are what its user reads first, and a burst
 * before the end would otherwise take exactly those.
 */
export const KEEP_LAST_LINES = 20;

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
  /**
   * Per stream, the last KEEP_LAST_LINES lines dropped since the last admitted one, numbered in the
   * order they came. Their drops are held back from batches until a later line is admitted (then
   * they are not the end) or end() admits them. Per stream, because stdout and stderr are two pipes
   * read in no fixed order: a traceback on stderr read before the last of a flood on stdout must
   * not be pushed out by it.
   */
  private readonly recent: Record<OutputStream, { text: string; order: number }[]> = {
    stdout: [],
    stderr: [],
  };
  private order = 0;

  constructor(options: Partial<LogTailOptions> = {}) {
    this.options = { ...DEFAULT_LOG_TAIL, ...options };
    this.tokens = this.options.burst;
    this.refilledAt = this.options.now();
  }

  push(stream: OutputStream, text: string): void {
    this.refill();
    if (this.tokens < 1 || this.pending.length >= this.options.maxPending) {
      this.addDropped(1);
      const recent = this.recent[stream];
      recent.push({ text, order: this.order++ });
      if (recent.length > KEEP_LAST_LINES) recent.shift();
      return;
    }
    this.recent.stdout.length = 0;
    this.recent.stderr.length = 0;
    this.tokens -= 1;
    this.pending.push({ stream, text: truncateLine(text) });
  }

  /** Whether a line pushed now would be admitted (a splitter skips lines that would not). */
  accepting(): boolean {
    this.refill();
    return this.tokens >= 1 && this.pending.length < this.options.maxPending;
  }

  /**
   * Lines the output had, dropped unseen: the rate limit would have dropped them, and they came
   * before lines still pushed (so they are not the output's last).
   */
  skipped(count: number): void {
    this.addDropped(count);
  }

  /** The gate a LineSplitter feeding this tail asks: lines the tail would drop are only counted. */
  lineGate(): LineGate {
    return {
      wanted: () => this.accepting(),
      skipped: (count) => this.skipped(count),
      keepLast: KEEP_LAST_LINES,
    };
  }

  /**
   * The output has ended: the lines dropped after the last admitted one (at most KEEP_LAST_LINES
   * of each stream) are admitted after all, past the rate limit, in the order they came, so the
   * tail ends where the output did.
   */
  end(): void {
    const last = [
      ...this.recent.stdout.map((line) => ({ ...line, stream: 'stdout' as const })),
      ...this.recent.stderr.map((line) => ({ ...line, stream: 'stderr' as const })),
    ].sort((a, b) => a.order - b.order);
    for (const line of last) this.pending.push({ stream: line.stream, text: truncateLine(line.text) });
    this.dropped -= last.length;
    this.droppedTotal -= last.length;
    this.recent.stdout.length = 0;
    this.recent.stderr.length = 0;
  }

  /** Drops end() may still take back. */
  private get lastCount(): number {
    return this.recent.stdout.length + this.recent.stderr.length;
  }

  /** The next batch to send, or null when there is nothing (no lines and nothing dropped). */
  take(): TailBatch | null {
    // Drops end() may take back are not reported yet: they are reported once a later line is admitted.
    const reportable = this.dropped - this.lastCount;
    if (this.pending.length === 0 && reportable === 0) return null;
    // At least one line per batch: one clipped line is at most ~6 KiB encoded, so it always fits.
    let count = 0;
    let bytes = 2; // the array's brackets
    while (count < this.pending.length && count < LOG_TAIL.maxLinesPerMessage) {
      bytes += Buffer.byteLength(JSON.stringify(this.pending[count])) + 1; // and a comma
      if (count > 0 && bytes > LINES_BUDGET_BYTES) break;
      count++;
    }
    const lines = this.pending.splice(0, count);
    // A count past what the control plane stores goes in the next batch (billions: `yes` offline).
    const dropped = Math.min(reportable, INT32_MAX);
    this.dropped -= dropped;
    return { lines, dropped };
  }

  /** A batch that could not be sent: its lines count as dropped, and its dropped count carries on. */
  restore(batch: TailBatch): void {
    this.dropped += batch.dropped;
    this.addDropped(batch.lines.length);
  }

  /** Counts every line still waiting as dropped (the shipper gave up on them); returns how many. */
  dropPending(): number {
    const count = this.pending.length;
    this.pending = [];
    this.recent.stdout.length = 0;
    this.recent.stderr.length = 0;
    this.addDropped(count);
    return count;
  }

  /** Lines waiting to be sent. */
  get pendingLines(): number {
    return this.pending.length;
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
