/**
 * Chooses an agent for a queued job and writes the attempt and its dispatch message (outbox) in the
 * caller's transaction. Never publishes itself: the outbox relay does, after commit.
 */
import { Inject, Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import type { EntityManager } from 'typeorm';
import type { Logger } from 'pino';
import { encode, JobDispatch, subjects } from '@hearth/contracts';
import { CONFIG, type Config } from '../../config/config.js';
import { LOGGER } from '../../platform/logging/logging.module.js';
import { OutboxRelay } from '../../platform/messaging/outbox-relay.service.js';
import { changedRows } from '../../platform/database/returning.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { JobEntity } from './job.entity.js';
import { JobUpdates } from './job-updates.service.js';
import { gpuNeedOf, hasFreeGpus, hasGpus } from './gpu-capacity.js';

export const ACTIVE = `('DISPATCHED','RUNNING')`;

/** The message an agent receives for one attempt of a job, by kind. */
export function dispatchOf(
  job: JobEntity,
  attempt: { attemptId: string; fencingToken: number; cancelGraceSeconds: number },
): JobDispatch {
  const base = {
    type: 'job.dispatch' as const,
    v: 1 as const,
    jobId: job.id,
    ...attempt,
    env: job.env,
    timeoutSeconds: job.timeoutSeconds,
    ...(job.gpus > 0 ? { gpus: job.gpus } : {}),
    ...(job.gpuVendor ? { gpuVendor: job.gpuVendor } : {}),
  };
  const spec = job.spec ?? {};
  switch (job.kind) {
    case 'COMMAND':
      return { ...base, kind: 'command', command: job.command! };
    case 'TRAIN':
      return { ...base, kind: 'train', train: spec.train! };
    case 'BATCH_PREDICT':
      return { ...base, kind: 'batch_predict', batchPredict: spec.batchPredict! };
    case 'SERVE':
      return { ...base, kind: 'serve', serve: spec.serve! };
  }
}
const SYSTEM = '*';
/** Stands for the agent id in a subject put together in SQL (Dispatcher.assign). */
const SUBJECT_AGENT = '00000000-0000-4000-8000-000000000000';

@Injectable()
export class Dispatcher {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(OutboxRelay) private readonly relay: OutboxRelay,
    @Inject(JobUpdates) private readonly updates: JobUpdates,
  ) {}

  private readonly kicked = new Set<string>();
  /** Tenants for which this process left a job QUEUED: only they need a pass when a slot frees. */
  private readonly waiting = new Set<string>();
  private kickLoop: Promise<void> | null = null;

  /**
   * Assigns a QUEUED job (locked by the caller) to the least-loaded eligible agent. Returns false and
   * records why when none is eligible; the job then waits, QUEUED, for assignQueued to try again.
   */
  async tryAssign(
    m: EntityManager,
    job: JobEntity,
    opts: { mayWait: boolean } = { mayWait: true },
  ): Promise<boolean> {
    const labels = JSON.stringify(job.agentSelector.labels ?? {});
    const ids = job.agentSelector.agentIds ?? null;
    // First without waiting (SKIP LOCKED: a transaction never waits on an agent while holding
    // another, so no lock cycle); then, if every such agent was being assigned to at that moment,
    // waiting for one, but only when the caller holds no agent lock (mayWait).
    for (const wait of opts.mayWait ? [false, true] : [false]) {
      if (await this.assign(m, job, { labels, ids, wait })) return true;
    }
    this.waiting.add(job.tenantId);
    const reason = await this.whyWaiting(m, job, labels, ids);
    if (reason !== job.stateReason) {
      await m.query(`UPDATE jobs SET state_reason = $2, updated_at = clock_timestamp() WHERE id = $1`, [
        job.id,
        reason,
      ]);
      job.stateReason = reason;
    }
    return false;
  }

  /**
   * Picks and locks the least-loaded eligible agent that has room, and writes the attempt, its
   * dispatch message (outbox) and the job's new state: one statement, so the agent row lock (which
   * serializes assignments to one agent) is held from here to COMMIT only. FOR NO KEY UPDATE, so
   * foreign-key checks on the agent (KEY SHARE) elsewhere do not wait for it. Returns false, having
   * changed nothing, when no agent qualifies. The outbox row is published once the caller commits.
   */
  private async assign(
    m: EntityManager,
    job: JobEntity,
    agent: { labels: string; ids: string[] | null; wait: boolean },
  ): Promise<boolean> {
    const attemptId = uuidv7();
    const number = job.attempts + 1;
    const gpus = gpuNeedOf(job);
    const payload = encode(
      JobDispatch,
      dispatchOf(job, {
        attemptId,
        fencingToken: number,
        cancelGraceSeconds: this.config.jobs.cancelGraceSeconds,
      }),
    );
    // The subject names the agent, chosen in the statement: it is put together there.
    const [subjectHead, subjectTail] = subjects
      .jobs({ tenantId: job.tenantId, agentId: SUBJECT_AGENT })
      .split(SUBJECT_AGENT);
    const load = `(SELECT count(*) FROM job_attempts t WHERE t.agent_id = a.id AND t.state IN ${ACTIVE})`;
    const rows = await changedRows<{ agent_id: string }>(
      m,
      `WITH agent AS MATERIALIZED (
         SELECT a.id FROM agents a
          WHERE a.tenant_id = $1 AND a.revoked_at IS NULL
            AND a.last_heartbeat_at > now() - make_interval(secs => $2)
            AND a.labels @> $3::jsonb AND ($4::uuid[] IS NULL OR a.id = ANY($4::uuid[]))
            AND ${load} < a.capacity AND ${hasFreeGpus('$5', '$6')}
          ORDER BY ${load} - a.capacity, a.last_heartbeat_at DESC
          LIMIT 1 FOR NO KEY UPDATE${agent.wait ? '' : ' SKIP LOCKED'}
       ), attempt AS (
         INSERT INTO job_attempts (id, tenant_id, job_id, number, fencing_token, agent_id, state, lease_expires_at)
         SELECT $8, $1, $7, $9::int, $9::int, agent.id, 'DISPATCHED', now() + make_interval(secs => $2) FROM agent
       ), message AS (
         INSERT INTO outbox (tenant_id, subject, msg_id, payload) SELECT $1, $10 || agent.id || $11, $8, $12 FROM agent
       )
       UPDATE jobs SET state = 'DISPATCHED', state_reason = NULL, attempts = $9, current_attempt_id = $8,
              agent_id = agent.id, updated_at = clock_timestamp()
         FROM agent WHERE jobs.id = $7
       RETURNING agent.id AS agent_id`,
      [
        job.tenantId,
        this.config.fleet.leaseSeconds,
        agent.labels,
        agent.ids,
        gpus.count,
        gpus.vendor,
        job.id,
        attemptId,
        number,
        subjectHead,
        subjectTail,
        Buffer.from(payload),
      ],
    );
    const agentId = rows[0]?.agent_id;
    if (!agentId) return false;
    const subject = subjects.jobs({ tenantId: job.tenantId, agentId });
    this.relay.publishOnCommit(m, { subject, msgId: attemptId, payload });
    Object.assign(job, {
      state: 'DISPATCHED',
      stateReason: null,
      attempts: number,
      currentAttemptId: attemptId,
      agentId,
    });
    return true;
  }

  private async whyWaiting(
    m: EntityManager,
    job: JobEntity,
    labels: string,
    ids: string[] | null,
  ): Promise<string> {
    const gpus = gpuNeedOf(job);
    const [row]: { matching: string; online: string; taking: string; with_gpus: string }[] = await m.query(
      `SELECT count(*) AS matching,
              count(*) FILTER (WHERE last_heartbeat_at > now() - make_interval(secs => $2)) AS online,
              count(*) FILTER (WHERE last_heartbeat_at > now() - make_interval(secs => $2) AND capacity > 0) AS taking,
              count(*) FILTER (WHERE last_heartbeat_at > now() - make_interval(secs => $2) AND ${hasGpus('$5', '$6')}) AS with_gpus
         FROM agents a WHERE tenant_id = $1 AND revoked_at IS NULL AND labels @> $3::jsonb
          AND ($4::uuid[] IS NULL OR id = ANY($4::uuid[]))`,
      [job.tenantId, this.config.fleet.leaseSeconds, labels, ids, gpus.count, gpus.vendor],
    );
    if (Number(row.matching) === 0) return 'waiting: no agent matches the selector';
    if (Number(row.online) === 0) return 'waiting: no matching agent is online';
    if (Number(row.taking) === 0) return 'waiting: every matching online agent is stopping';
    if (Number(row.with_gpus) === 0)
      return `waiting: no matching online agent has ${gpus.count} ${gpus.vendor ? `${gpus.vendor} ` : ''}GPU${gpus.count === 1 ? '' : 's'}`;
    return 'waiting: every matching agent is busy';
  }

  /**
   * Assigns queued jobs, oldest first: for one tenant (after an agent came online or freed a slot)
   * or for all (the periodic sweep). SKIP LOCKED lets replicas share the work.
   */
  /**
   * Asks for assignQueued soon, coalescing bursts (every finished job frees a slot; a pass per event
   * would repeat the same scan). At most one pass runs at a time in this process.
   */
  kick(tenantId: string | null) {
    // Jobs another replica left waiting are picked up by the periodic system pass (kick(null)).
    if (tenantId !== null && !this.waiting.has(tenantId)) return;
    this.kicked.add(tenantId ?? SYSTEM);
    if (this.kickLoop) return;
    this.kickLoop = (async () => {
      while (this.kicked.size) {
        const scope = this.kicked.has(SYSTEM) ? SYSTEM : [...this.kicked][0];
        if (scope === SYSTEM) this.kicked.clear();
        else this.kicked.delete(scope);
        await this.assignQueued(scope === SYSTEM ? null : scope).catch((err: unknown) =>
          this.log.error({ err }, 'assigning queued jobs failed'),
        );
      }
    })().finally(() => (this.kickLoop = null));
  }

  async assignQueued(tenantId: string | null, limit = 200): Promise<void> {
    const run = (m: EntityManager) => this.assignQueuedIn(m, limit);
    const { assigned, waiting } = tenantId ? await this.tx.tenant(tenantId, run) : await this.tx.system(run);
    if (tenantId === null) this.waiting.clear();
    else this.waiting.delete(tenantId);
    for (const t of waiting) this.waiting.add(t);
    for (const j of assigned) this.updates.publish(j.tenantId, j.id);
  }

  private async assignQueuedIn(
    m: EntityManager,
    limit: number,
  ): Promise<{ assigned: JobEntity[]; waiting: Set<string> }> {
    const queued = await m
      .createQueryBuilder(JobEntity, 'j')
      .where(`j.state = 'QUEUED'`)
      .orderBy('j.created_at', 'ASC')
      .limit(limit)
      .setLock('pessimistic_write')
      .setOnLocked('skip_locked')
      .getMany();
    const assigned: JobEntity[] = [];
    const full = new Set<string>(); // selectors no agent could take in this pass
    for (const job of queued) {
      // Jobs asking for different GPUs can fit where another could not: they are tried apart.
      const selector = `${job.tenantId}:${JSON.stringify(job.agentSelector)}:${job.gpus}:${job.gpuVendor}`;
      if (full.has(selector)) continue;
      // Once this transaction holds an agent lock it must not wait for another (lock cycles).
      if (await this.tryAssign(m, job, { mayWait: assigned.length === 0 })) assigned.push(job);
      else full.add(selector);
    }
    if (queued.length)
      this.log.debug({ queued: queued.length, assigned: assigned.length }, 'assigned queued jobs');
    const waiting = new Set(queued.filter((j) => !assigned.includes(j)).map((j) => j.tenantId));
    // A full page means more may wait beyond it.
    if (queued.length === limit) for (const j of queued) waiting.add(j.tenantId);
    return { assigned, waiting };
  }
}
