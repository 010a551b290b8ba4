/**
 * Cancels an idle job through the jobs service's own cancel path (lock, audit, control message
 * through the outbox), as the system: the same path a user's cancelJob takes, minus the permission
 * check (the organization's idle policy is the authority).
 */
import { Inject, Injectable } from '@nestjs/common';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { JobEntity } from '../jobs/job.entity.js';
import { JobsService } from '../jobs/jobs.service.js';
import type { IdleCanceller } from './idle-detector.service.js';

@Injectable()
export class JobsIdleCanceller implements IdleCanceller {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(JobsService) private readonly jobs: JobsService,
  ) {}

  async cancelIdle(tenantId: string, jobId: string): Promise<boolean> {
    const outcome = await this.tx.tenant(tenantId, async (m) => {
      const found = await m.findOne(JobEntity, { where: { id: jobId }, lock: { mode: 'pessimistic_write' } });
      if (!found) return null;
      return this.jobs.requestCancel(m, found, { type: 'system', id: null }, 'cancelled: its GPUs were idle');
    });
    if (!outcome) return false;
    this.jobs.announceCancel(outcome.job);
    return outcome.sent || outcome.job.state === 'CANCELLED';
  }
}
