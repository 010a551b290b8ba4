import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../../platform/auth/principal.js';
import { Sessions } from '../../platform/auth/sessions.js';
import { UnauthenticatedError } from '../../platform/errors/domain-error.js';
import { JobUpdates } from './job-updates.service.js';
import type { JobModel } from './job.model.js';
import { JobsService } from './jobs.service.js';

/**
 * Backs the jobUpdated subscription: yields the job as it is now, then again after every change.
 * Returning the iterator (client went away) aborts the NATS subscription at once; revoking the
 * caller's credentials ends it too.
 */
@Injectable()
export class JobWatcher {
  constructor(
    @Inject(JobsService) private readonly jobs: JobsService,
    @Inject(JobUpdates) private readonly updates: JobUpdates,
    @Inject(Sessions) private readonly sessions: Sessions,
  ) {}

  async watch(p: Principal, id: string): Promise<AsyncIterableIterator<{ jobUpdated: JobModel }>> {
    await this.jobs.get(p, id); // NOT_FOUND before anything is subscribed
    const abort = new AbortController();
    const changes = this.updates.watch(p.tenantId, id, abort.signal); // subscribed before the first read
    const first = await this.jobs.get(p, id).catch((err: unknown) => {
      abort.abort();
      throw err;
    });
    // Revoking the caller's token, or removing the caller, ends the stream with UNAUTHENTICATED.
    let revoked: string | null = null;
    const untrack = this.sessions.track(p, (reason) => {
      revoked = reason;
      abort.abort();
    });
    const jobs = this.jobs;
    async function* stream() {
      try {
        yield { jobUpdated: first };
        for await (const _ of changes) {
          if (revoked) break;
          yield { jobUpdated: await jobs.get(p, id) };
        }
        if (revoked) throw new UnauthenticatedError(revoked);
      } finally {
        untrack();
      }
    }
    const gen = stream();
    const iterator: AsyncIterableIterator<{ jobUpdated: JobModel }> = {
      next: () => gen.next(),
      return: (value?: unknown) => {
        abort.abort();
        return gen.return(value as undefined);
      },
      throw: (err?: unknown) => gen.throw(err),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }
}
