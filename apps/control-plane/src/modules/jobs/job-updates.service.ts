/**
 * Tells subscribers (graphql-ws `jobUpdated`) that a job changed. Goes over core NATS on a subject
 * agents cannot read, so every control-plane replica hears about changes any replica made.
 */
import { Inject, Injectable } from '@nestjs/common';
import { NatsService } from '../../platform/messaging/nats.service.js';

const subject = (tenantId: string, jobId: string) => `hearth._cp.job.${tenantId}.${jobId}`;

@Injectable()
export class JobUpdates {
  constructor(@Inject(NatsService) private readonly nats: NatsService) {}

  publish(tenantId: string, jobId: string) {
    try {
      this.nats.nc.publish(subject(tenantId, jobId));
    } catch {
      // Best effort by design: a subscriber that misses a ping re-reads the job on the next one,
      // and the job itself is durable in Postgres.
    }
  }

  /** Subscribes now; yields each time the job changes, until the signal aborts. */
  watch(tenantId: string, jobId: string, signal: AbortSignal): AsyncIterable<unknown> {
    const sub = this.nats.nc.subscribe(subject(tenantId, jobId));
    signal.addEventListener('abort', () => sub.unsubscribe(), { once: true });
    return sub;
  }
}
