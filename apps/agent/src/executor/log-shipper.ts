/**
 * Sends a job's log tail up in batches about every 250 ms. Each batch is retried a few times
 * (same seq, so the stream deduplicates); a batch that still fails is counted as dropped and
 * reported in the next batch's `dropped`, never silently lost.
 */
import { backoffDelay, sleep } from '../connection/backoff.js';
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

export class LogShipper {
  private seq = 0;
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

  private async flush(): Promise<void> {
    for (let batch = this.options.tail.take(); batch; batch = this.options.tail.take()) {
      await this.sendOne(batch);
    }
  }

  private async sendOne(batch: TailBatch): Promise<void> {
    const seq = this.seq++;
    const attempts = this.options.attempts ?? 3;
    for (let i = 0; i < attempts; i++) {
      try {
        await this.options.send(batch, seq);
        return;
      } catch (err) {
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
  }
}
