/**
 * Sends one attempt's JobProgress events in order, without holding up the job: send() queues, a
 * chain publishes one at a time. Each event is retried with backoff under the same seq (the
 * stream deduplicates); one that still fails is counted and logged, and the chain moves on. A
 * message the contract refuses is a bug: logged and counted, never retried. An event the stream
 * refuses because this agent's share of it is full is dropped and counted at once (retrying it
 * would only hold up the events behind it, the attempt's end included), unless it must arrive
 * (`untilSent`), which is retried until the stream has room. finish() waits for the queue, so the
 * job's progress goes up before its JobFinished.
 */
import type { JobProgress } from '@hearth/contracts';
import { backoffDelay, sleep } from '../connection/backoff.js';
import { EgressRefusedError, StreamFullError } from '../egress/guard.js';
import { errorMessage, type Logger } from '../logger.js';
import type { AgentCounters } from '../telemetry/counters.js';

export type Progress = JobProgress['progress'];

export interface ProgressSenderOptions {
  send: (progress: Progress, seq: number) => Promise<void>;
  logger: Logger;
  counters: Pick<AgentCounters, 'progressDropped'>;
  /** Aborts retries (forced stop). */
  signal: AbortSignal;
  /** Tries per event; default 5. */
  attempts?: number;
  backoff?: { initialMs: number; maxMs: number };
}

const BACKOFF = { initialMs: 200, maxMs: 5000 };

export class ProgressSender {
  private seq = 0;
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly options: ProgressSenderOptions) {}

  /** Queues an event; `untilSent` retries it until it goes (or the forced stop), for what must arrive. */
  send(progress: Progress, untilSent = false): void {
    const seq = this.seq++;
    this.tail = this.tail.then(() => this.sendOne(progress, seq, untilSent));
  }

  /** Resolves when every queued event has been sent or given up on. */
  finish(): Promise<void> {
    return this.tail;
  }

  private async sendOne(progress: Progress, seq: number, untilSent: boolean): Promise<void> {
    const { logger, signal } = this.options;
    const attempts = untilSent ? Infinity : (this.options.attempts ?? 5);
    let reason = 'not acknowledged';
    for (let i = 0; i < attempts; i++) {
      try {
        await this.options.send(progress, seq);
        return;
      } catch (err) {
        if (err instanceof EgressRefusedError) {
          logger.error(
            { err: err.message, seq, kind: progress.kind },
            'progress event refused by the egress guard',
          );
          reason = 'refused by the egress guard';
          break;
        }
        if (err instanceof StreamFullError && !untilSent) {
          reason = 'the stream is full';
          break;
        }
        logger.warn(
          { err: errorMessage(err), seq, kind: progress.kind, try: i + 1 },
          'progress event not acknowledged',
        );
        if (i + 1 < attempts && !(await sleep(backoffDelay(i, this.options.backoff ?? BACKOFF), signal)))
          break;
      }
    }
    this.options.counters.progressDropped++;
    logger.warn(
      { seq, kind: progress.kind, reason, dropped: this.options.counters.progressDropped },
      'progress event dropped',
    );
  }
}
