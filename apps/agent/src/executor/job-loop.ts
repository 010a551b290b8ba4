/**
 * Pulls dispatch messages one at a time, and only while a slot is free: the agent never holds
 * more jobs than --max-jobs. Each message is handled concurrently; the loop stops taking new work
 * when its signal aborts, and idle() tells when the last job has been reported. A handler may give
 * its slot back early (release): deployments serve for as long as they live and take no job slot.
 */
import type { Consumer, JsMsg } from '@nats-io/jetstream';
import { backoffDelay, sleep } from '../connection/backoff.js';
import { errorMessage, type Logger } from '../logger.js';

const PULL_EXPIRES_MS = 5000;

export class JobLoop {
  private inFlight = 0;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly consumer: Pick<Consumer, 'fetch'>,
    private readonly maxJobs: number,
    private readonly handle: (msg: JsMsg, release: () => void) => Promise<void>,
    private readonly logger: Logger,
  ) {}

  /** Capacity left; 0 once stopped (a draining agent takes nothing). */
  freeSlots(stopped: boolean): number {
    return stopped ? 0 : Math.max(0, this.maxJobs - this.inFlight);
  }

  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      if (this.inFlight >= this.maxJobs) {
        await this.changed(signal);
        continue;
      }
      let msg: JsMsg | null;
      try {
        msg = await this.pullOne(signal);
        failures = 0;
      } catch (err) {
        const delay = backoffDelay(failures++);
        this.logger.warn({ err: errorMessage(err), retryInMs: delay }, 'pulling jobs failed; retrying');
        await sleep(delay, signal);
        continue;
      }
      if (!msg) continue;
      if (signal.aborted) {
        msg.nak(); // stopping: give it back at once rather than after ack_wait
        break;
      }
      this.inFlight++;
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        this.inFlight--;
        this.notify();
      };
      void this.handle(msg, release)
        .catch((err: unknown) => this.logger.error({ err: errorMessage(err) }, 'job handler failed'))
        .finally(release);
    }
  }

  /** One message or null; a pending pull is closed at once when the signal aborts. */
  private async pullOne(signal: AbortSignal): Promise<JsMsg | null> {
    const batch = await this.consumer.fetch({ max_messages: 1, expires: PULL_EXPIRES_MS });
    const close = () => void batch.close();
    signal.addEventListener('abort', close, { once: true });
    try {
      let msg: JsMsg | null = null;
      for await (const m of batch) msg = m;
      return msg;
    } finally {
      signal.removeEventListener('abort', close);
    }
  }

  /** Resolves when no job is in flight, or false when the signal aborts first. */
  async idle(signal: AbortSignal): Promise<boolean> {
    while (this.inFlight > 0) {
      if (signal.aborted) return false;
      await this.changed(signal);
    }
    return true;
  }

  private changed(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve();
      };
      this.waiters.push(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
