/**
 * Finds attempts whose lease ran out (the agent died, was cut off or was revoked), marks them LOST
 * and re-queues their jobs while attempts remain, then assigns queued jobs. Runs on every replica;
 * row locks with SKIP LOCKED make concurrent sweeps safe, so no leader is needed.
 */
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { Logger } from 'pino';
import { CONFIG, type Config } from '../../config/config.js';
import { LOGGER } from '../../platform/logging/logging.module.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { jobTransitions } from '../../platform/metrics/metrics.js';
import { Dispatcher } from './dispatcher.service.js';
import { PROGRESS_REQUEUED } from './job.entity.js';
import { JobUpdates } from './job-updates.service.js';

interface Expired {
  attempt_id: string;
  job_id: string;
  tenant_id: string;
  agent_id: string;
  number: number;
}

@Injectable()
export class LeaseSweeper implements OnApplicationShutdown {
  private timer: NodeJS.Timeout | null = null;
  private pass: Promise<void> | null = null;
  private passes = 0;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(Dispatcher) private readonly dispatcher: Dispatcher,
    @Inject(JobUpdates) private readonly updates: JobUpdates,
  ) {}

  start() {
    this.timer = setInterval(() => {
      if (this.pass) return;
      this.pass = this.sweep()
        .catch((err: unknown) => this.log.error({ err }, 'lease sweep failed'))
        .finally(() => (this.pass = null));
    }, this.config.fleet.sweepIntervalSeconds * 1000);
  }

  async sweep(): Promise<void> {
    const changed = await this.tx.system(async (m) => {
      const expired: Expired[] = await m.query(
        `SELECT a.id AS attempt_id, a.job_id, a.tenant_id, a.agent_id, a.number
           FROM job_attempts a
          WHERE a.state IN ('DISPATCHED','RUNNING') AND a.lease_expires_at < now()
          ORDER BY a.lease_expires_at LIMIT 100`,
      );
      const done: Expired[] = [];
      for (const e of expired) {
        // Job first, then attempt: the same lock order as the agent-report path.
        const [job]: {
          current_attempt_id: string;
          attempts: number;
          max_attempts: number;
          cancel: boolean;
        }[] = await m.query(
          // Attempts given back by a stopping agent (RELEASED) do not count against max_attempts.
          `SELECT current_attempt_id, max_attempts, cancel_requested_at IS NOT NULL AS cancel,
                  attempts - (SELECT count(*) FROM job_attempts r WHERE r.job_id = jobs.id AND r.state = 'RELEASED')::int AS attempts
               FROM jobs WHERE id = $1 FOR UPDATE SKIP LOCKED`,
          [e.job_id],
        );
        if (!job) continue;
        const [still] = await m
          .query(
            `UPDATE job_attempts SET state = 'LOST', finished_at = now(),
                  reason = 'lease expired: the agent stopped responding or was revoked'
            WHERE id = $1 AND state IN ('DISPATCHED','RUNNING') AND lease_expires_at < now() RETURNING id`,
            [e.attempt_id],
          )
          .then((r: [unknown[], number]) => r[0] as unknown[]);
        if (!still || job.current_attempt_id !== e.attempt_id) continue;
        let state: string;
        let reason: string;
        if (job.cancel) [state, reason] = ['CANCELLED', 'cancelled; the agent was lost before it confirmed'];
        else if (job.attempts < job.max_attempts)
          [state, reason] = ['QUEUED', `attempt ${e.number} lost with agent ${e.agent_id}; re-queued`];
        else
          [state, reason] = [
            'FAILED',
            `attempt ${e.number} lost with agent ${e.agent_id}; no attempts left (${job.attempts} of ${job.max_attempts} used)`,
          ];
        const terminal = state !== 'QUEUED';
        await m.query(
          `UPDATE jobs SET state = $2, state_reason = $3, current_attempt_id = CASE WHEN $4 THEN current_attempt_id END,
                  finished_at = CASE WHEN $4 THEN now() END, updated_at = clock_timestamp(),
                  progress = CASE WHEN $4 THEN progress ELSE ${PROGRESS_REQUEUED} END
            WHERE id = $1`,
          [e.job_id, state, reason, terminal],
        );
        jobTransitions.inc({ to: state });
        this.log.warn(
          { tenantId: e.tenant_id, jobId: e.job_id, attemptId: e.attempt_id, agentId: e.agent_id, state },
          'attempt lost',
        );
        done.push(e);
      }
      // Published outbox rows are kept a day (for inspection), pruned once a minute, in bounded bites.
      if (++this.passes % 60 === 0)
        await m.query(
          `DELETE FROM outbox WHERE id IN (
             SELECT id FROM outbox WHERE published_at < now() - interval '1 day' LIMIT 10000)`,
        );
      return done;
    });
    for (const e of changed) this.updates.publish(e.tenant_id, e.job_id);
    this.dispatcher.kick(null);
  }

  async onApplicationShutdown() {
    if (this.timer) clearInterval(this.timer);
    await this.pass;
  }
}
