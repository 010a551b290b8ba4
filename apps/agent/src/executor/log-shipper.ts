/**
 * Sends a job's log tail up in batches about every 250 ms. Each batch is retried a few times
 * (same seq, so the stream deduplicates); a batch that still fails is counted as dropped and
 * reported in the next batch's `dropped`, never silently lost. A batch the egress guard refuses
 * is a bug, not a hiccup: logged, counted as dropped, never retried. While the stream is full for
 * this agent (the control plane has not consumed its share yet) nothing is retried either: the
 * batch and every line waiting are dropped and counted, and each tick tries once more, so the
 * count goes up with the first batch the stream takes again. The log tail is what may be dropped:
 * the full log stays on disk, and the room is kept for what must arrive (the attempt's end).
 */
import { backoffDelay, sleep } from '../connection/backoff.js';
import { EgressRefusedError, StreamFullError } from '../egress/guard.js';
import { errorMessage, type Logger } from '../logger.js';
import type { LogTail, TailBatch } from './log-tail.js';

export interface LogShipperOptions {
  tail: LogTail;
  send: (batch: TailBatch, seq: number) => Promise<void>;
  logger: Logger;
  intervalMs?: number;
  attempts?: number;
  /** Aborts retries (forced stop). */
  signal: AbortSignal;
}

type Sent = 'sent' | 'failed' | 'full';

export class LogShipper {
  private seq = 0;
  /** Whether the last send found the stream full (so that it is logged once, not every tick). */
  private full = false;
  private readonly ticking = new AbortController();
  private loop: Promise<void> = Promise.resolve();

  constructor(private readonly options: LogShipperOptions) {}

  start(): void {
    this.loop = this.run();
  }

  /** Stops the ticks and sends what is left. */
  async finish(): Promise<void> {
    this.ticking.abort();
    await this.loop;
    await this.flush();
  }

  private async run(): Promise<void> {
    while (await sleep(this.options.intervalMs ?? 250, this.ticking.signal)) await this.flush();
  }

  /**
   * Sends the lines waiting when it starts, and no more. A failed batch comes back as a drop
   * count, so "until take() is null" would never end while sends fail; and after a forced stop
   * (no backoff, a closed connection rejecting at once) it would spin without ever yielding to a
   * timer. So under a forced stop the first failure ends it: what is left counts as dropped.
   */
  private async flush(): Promise<void> {
    const { tail, signal, logger } = this.options;
    let left = tail.pendingLines;
    do {
      const batch = tail.take();
      if (!batch) return;
      left -= batch.lines.length;
      const sent = await this.sendOne(batch);
      if (sent === 'full') {
        tail.dropPending(); // counted: the next batch the stream takes reports them
        return;
      }
      if (sent === 'failed' && signal.aborted) {
        const lost = tail.dropPending();
        if (lost > 0) logger.warn({ lost }, 'log lines not sent: agent stopping');
        return;
      }
    } while (left > 0);
  }

  /** Whether the batch was sent; when not, its lines count as dropped. */
  private async sendOne(batch: TailBatch): Promise<Sent> {
    const seq = this.seq++;
    const attempts = this.options.attempts ?? 3;
    for (let i = 0; i < attempts; i++) {
      try {
        await this.options.send(batch, seq);
        if (this.full) this.options.logger.info({ seq }, 'log lines sent again: the stream has room');
        this.full = false;
        return 'sent';
      } catch (err) {
        if (err instanceof StreamFullError) {
          if (!this.full)
            this.options.logger.warn(
              { err: err.message, seq },
              'the stream is full for this agent: log lines are dropped and counted until it has room',
            );
          this.full = true;
          this.options.tail.restore(batch);
          return 'full';
        }
        if (err instanceof EgressRefusedError) {
          this.options.logger.error({ err: err.message, seq }, 'log batch refused by the egress guard');
          break;
        }
        this.options.logger.warn({ err: errorMessage(err), seq, try: i + 1 }, 'log batch not acknowledged');
        if (
          i + 1 < attempts &&
          !(await sleep(backoffDelay(i, { initialMs: 200, maxMs: 2000 }), this.options.signal))
        ) {
          break;
        }
      }
    }
    this.options.tail.restore(batch);
    return 'failed';
  }
}
