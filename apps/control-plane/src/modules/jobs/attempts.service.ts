/**
 * What agents report about attempts, applied as idempotent, fenced state transitions. Every input
 * here came from an agent, so it is untrusted: the tenant and agent come from the NATS subject (which
 * nats-server only lets that agent publish on), and a report counts only if it names the job's
 * current attempt, with its fencing token, held by that same agent.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { Logger } from 'pino';
import type {
  AgentAddress,
  JobClaim,
  JobClaimReply,
  JobFinished,
  JobLog,
  JobProgress,
  JobReleased,
} from '@hearth/contracts';
import { TRAIN_LIMITS } from '@hearth/contracts';
import { CONFIG, type Config } from '../../config/config.js';
import { LOGGER } from '../../platform/logging/logging.module.js';
import { jobTransitions, staleResultsRejected } from '../../platform/metrics/metrics.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { ACTIVE, Dispatcher } from './dispatcher.service.js';
import { JobEntity, PROGRESS_REQUEUED, type JobKindName } from './job.entity.js';
import { JobKinds, type JobKindHandler } from './job-kinds.js';
import { JobUpdates } from './job-updates.service.js';

const LOG_TAIL_CHARS = 64 * 1024;
/**
 * A job given back more often than this within an hour ends FAILED instead of being queued again:
 * releases do not count against maxAttempts (they are the agent's doing, not the job's), so without
 * a bound an agent that claims and releases in a loop would keep a job alive forever.
 */
export const MAX_RELEASES_PER_HOUR = 5;
/** Which progress a job of each kind reports; anything else is not from a genuine attempt. */
const PROGRESS_OF: Record<JobProgress['progress']['kind'], JobKindName> = {
  'train.backend': 'TRAIN',
  'train.epoch': 'TRAIN',
  'serve.ready': 'SERVE',
  'serve.metrics': 'SERVE',
};

interface Current {
  state: string;
  kind: JobKindName;
  cancel_requested: boolean;
  attempt_state: string | null;
  attempt_agent: string | null;
  fencing_token: string | null;
  is_current: boolean;
  agent_revoked: boolean | null;
}

type Ref = { jobId: string; attemptId: string; fencingToken: number };

/**
 * Nothing a revoked agent sends is applied, even what it sent before the revocation and still
 * waits in the stream: its attempts are lost and run again, and its results are not trusted.
 */
const AGENT_NOT_REVOKED = `NOT EXISTS (SELECT 1 FROM agents g WHERE g.id = $3 AND g.revoked_at IS NOT NULL)`;

/**
 * Starts an attempt ($1 job, $2 attempt, $3 agent, $4 fencing token, $5 lease seconds) only if it is
 * the job's current one, DISPATCHED, held by that agent with that token, and no cancel was asked.
 * Returns the job's id when it did. Both rows in one statement: it is on the path to RUNNING.
 */
const START_ATTEMPT = `WITH attempt AS (
    UPDATE job_attempts SET state = 'RUNNING', started_at = now(), lease_expires_at = now() + make_interval(secs => $5)
     WHERE id = $2 AND job_id = $1 AND state = 'DISPATCHED' AND agent_id = $3 AND fencing_token = $4
       AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = $1 AND j.current_attempt_id = $2 AND j.cancel_requested_at IS NULL)
       AND ${AGENT_NOT_REVOKED}
    RETURNING id)
  UPDATE jobs SET state = 'RUNNING', state_reason = NULL, started_at = coalesce(started_at, now()),
         updated_at = clock_timestamp()
   WHERE id = $1 AND EXISTS (SELECT 1 FROM attempt) RETURNING id`;

/**
 * Finishes an attempt and its job ($1 job, $2 attempt, $3 agent, $4 fencing token, $5 outcome,
 * $6 exit code, $7 reason) only if it is the job's current one, active, held by that agent with that
 * token, and not a success of a kind whose success needs a checked result ($8, text[]: those kinds,
 * see JobKinds.withResults). Returns the job's id when it did.
 */
const FINISH_ATTEMPT = `WITH attempt AS (
    UPDATE job_attempts SET state = $5, exit_code = $6, reason = $7, finished_at = now()
     WHERE id = $2 AND job_id = $1 AND state IN ${ACTIVE} AND agent_id = $3 AND fencing_token = $4
       AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = $1 AND j.current_attempt_id = $2
                     AND ($5 <> 'SUCCEEDED' OR j.kind <> ALL($8::text[])))
       AND ${AGENT_NOT_REVOKED}
    RETURNING id)
  UPDATE jobs SET state = $5, exit_code = $6, state_reason = $7, finished_at = now(), updated_at = clock_timestamp()
   WHERE id = $1 AND EXISTS (SELECT 1 FROM attempt) RETURNING id`;

/** The job row lock every change to a job's attempts takes first (one lock order). */
const LOCK_JOB = `SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE`;

@Injectable()
export class AttemptsService {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(Dispatcher) private readonly dispatcher: Dispatcher,
    @Inject(JobUpdates) private readonly updates: JobUpdates,
    @Inject(JobKinds) private readonly kinds: JobKinds,
  ) {}

  /** Locks the job and reads the attempt the message names. Job first, always: one lock order. */
  private async lockCurrent(m: EntityManager, ref: Ref): Promise<Current | null> {
    const [row]: Current[] = await m.query(
      `SELECT j.state, j.kind, j.cancel_requested_at IS NOT NULL AS cancel_requested, a.state AS attempt_state,
              a.agent_id AS attempt_agent, a.fencing_token, j.current_attempt_id = a.id AS is_current,
              g.revoked_at IS NOT NULL AS agent_revoked
         FROM jobs j LEFT JOIN job_attempts a ON a.id = $2 AND a.job_id = j.id
              LEFT JOIN agents g ON g.id = a.agent_id
        WHERE j.id = $1 FOR UPDATE OF j`,
      [ref.jobId, ref.attemptId],
    );
    return row ?? null;
  }

  private fenced(cur: Current | null, ref: Ref, agentId: string): string | null {
    if (!cur || !cur.attempt_state) return 'unknown job or attempt';
    if (cur.attempt_agent !== agentId) return 'attempt belongs to another agent';
    if (cur.agent_revoked) return 'agent revoked';
    if (!cur.is_current || Number(cur.fencing_token) !== ref.fencingToken)
      return 'stale attempt (superseded)';
    return null;
  }

  /**
   * The common case of a claim in one round trip: the job locked, then START_ATTEMPT. Returns false
   * when it did not start, having changed nothing.
   */
  private async startFast(a: AgentAddress, msg: JobClaim): Promise<boolean> {
    const [, started] = await this.tx.oneRoundTrip(a.tenantId, [
      { sql: LOCK_JOB, params: [msg.jobId] },
      { sql: START_ATTEMPT, params: this.startParams(a, msg) },
    ]);
    return started.length === 1;
  }

  private startParams(a: AgentAddress, ref: Ref) {
    return [ref.jobId, ref.attemptId, a.agentId, ref.fencingToken, this.config.fleet.leaseSeconds];
  }

  /** The agent asks to start an attempt. Only the current, dispatched attempt of a live job may start. */
  async claim(a: AgentAddress, msg: JobClaim): Promise<JobClaimReply> {
    if (await this.startFast(a, msg)) {
      jobTransitions.inc({ to: 'RUNNING' });
      this.updates.publish(a.tenantId, msg.jobId);
      return { type: 'job.claim.reply', v: 1, ok: true };
    }
    // Anything else (a repeated claim, a stale or foreign attempt, a cancel) takes the full path.
    const refuse = (reason: string): JobClaimReply => ({ type: 'job.claim.reply', v: 1, ok: false, reason });
    const result = await this.tx.tenant(a.tenantId, async (m) => {
      const cur = await this.lockCurrent(m, msg);
      const fenced = this.fenced(cur, msg, a.agentId);
      if (fenced) return { reply: refuse(fenced), changed: false };
      if (cur!.attempt_state === 'RUNNING')
        return { reply: { type: 'job.claim.reply', v: 1, ok: true } as const, changed: false };
      if (cur!.attempt_state !== 'DISPATCHED')
        return { reply: refuse(`attempt is ${cur!.attempt_state}`), changed: false };
      if (cur!.cancel_requested) {
        await this.finish(m, a, msg, 'CANCELLED', null, 'cancelled before it started');
        return { reply: refuse('job was cancelled'), changed: true };
      }
      await m.query(START_ATTEMPT, this.startParams(a, msg)); // its conditions hold: checked above, under the lock
      jobTransitions.inc({ to: 'RUNNING' });
      return { reply: { type: 'job.claim.reply', v: 1, ok: true } as const, changed: true };
    });
    if (!result.reply.ok) this.reject('job.claim', a, msg, result.reply.reason!);
    if (result.changed) this.updates.publish(a.tenantId, msg.jobId);
    return result.reply;
  }

  /**
   * Appends a bounded log tail to the job, once per batch: a redelivered batch (same or older seq)
   * changes nothing. Logs of stale or ended attempts are dropped: an attempt's lines come before
   * its end, in order, so a line after it is not the job's.
   */
  async appendLog(a: AgentAddress, msg: JobLog): Promise<void> {
    const stale = await this.tx.tenant(a.tenantId, async (m) => {
      const cur = await this.lockCurrent(m, msg);
      const fenced = this.fenced(cur, msg, a.agentId) ?? this.ended(cur!, ['DISPATCHED', 'RUNNING']);
      if (fenced) return fenced;
      const text = msg.lines.map((l) => (l.stream === 'stderr' ? `[stderr] ${l.text}` : l.text)).join('\n');
      await m.query(
        `WITH seen AS (UPDATE job_attempts SET log_seq = $5 WHERE id = $4 AND log_seq < $5 RETURNING id)
         UPDATE jobs SET log_tail = right(log_tail || $2, ${LOG_TAIL_CHARS}),
                log_dropped_lines = log_dropped_lines + least($3, 9223372036854775807 - log_dropped_lines)
          WHERE id = $1 AND EXISTS (SELECT 1 FROM seen)`,
        [msg.jobId, text ? `${text}\n` : '', msg.dropped, msg.attemptId, msg.seq],
      );
      return null;
    });
    if (stale) this.reject('job.log', a, msg, stale);
  }

  /** Why a report cannot apply to an attempt in its state, or null. */
  private ended(cur: Current, states: readonly string[]): string | null {
    return states.includes(cur.attempt_state!) ? null : `attempt is ${cur.attempt_state}`;
  }

  /**
   * Records what a running attempt reports (backend, epochs, serving endpoint and metrics) on the job.
   * Fenced like every report, only while the attempt runs, only of the job's kind (train.* for TRAIN,
   * serve.* for SERVE), and applied once: a redelivered message (same or older seq) changes nothing.
   */
  async progress(a: AgentAddress, msg: JobProgress): Promise<void> {
    const stale = await this.tx.tenant(a.tenantId, async (m) => {
      const cur = await this.lockCurrent(m, msg);
      const fenced = this.fenced(cur, msg, a.agentId) ?? this.ended(cur!, ['RUNNING']);
      if (fenced) return fenced;
      if (PROGRESS_OF[msg.progress.kind] !== cur!.kind)
        return `a ${cur!.kind} job does not report ${msg.progress.kind}`;
      const [{ applied }]: { applied: boolean }[] = await m.query(
        `WITH seen AS (UPDATE job_attempts SET progress_seq = $2 WHERE id = $1 AND progress_seq < $2 RETURNING id)
         SELECT EXISTS (SELECT 1 FROM seen) AS applied`,
        [msg.attemptId, msg.seq],
      );
      if (!applied) return null;
      const p = msg.progress;
      const patch =
        p.kind === 'train.backend'
          ? `jsonb_build_object('backend', $2::text)`
          : p.kind === 'train.epoch'
            ? // Bounded: at most TRAIN_LIMITS.maxEpochs entries are kept.
              `jsonb_build_object('epochs', coalesce(progress->'epochs', '[]'::jsonb) || jsonb_build_array($2::jsonb))`
            : p.kind === 'serve.ready'
              ? `$2::jsonb`
              : `jsonb_build_object('serveMetrics', $2::jsonb || jsonb_build_object('at', now()))`;
      const value =
        p.kind === 'train.backend'
          ? p.backend
          : p.kind === 'train.epoch'
            ? JSON.stringify(p.metrics)
            : p.kind === 'serve.ready'
              ? JSON.stringify({ endpoint: p.endpoint, executionProvider: p.executionProvider })
              : JSON.stringify(p.metrics);
      await m.query(
        `UPDATE jobs SET progress = progress || ${patch}, updated_at = clock_timestamp()
          WHERE id = $1 AND (jsonb_array_length(coalesce(progress->'epochs', '[]'::jsonb)) < ${TRAIN_LIMITS.maxEpochs}
                             OR $3 <> 'train.epoch')`,
        [msg.jobId, value, p.kind],
      );
      return null;
    });
    if (stale) this.reject('job.progress', a, msg, stale);
    else this.updates.publish(a.tenantId, msg.jobId);
  }

  /**
   * The common case of a result in one round trip: a result without a payload (a command's, or any
   * job's failure), the job locked, then FINISH_ATTEMPT. Returns false when it does not apply (a
   * success that needs a result takes the full path), having changed nothing.
   */
  private async finishFast(a: AgentAddress, msg: JobFinished): Promise<boolean> {
    if (msg.result) return false;
    const [, finished] = await this.tx.oneRoundTrip(a.tenantId, [
      { sql: LOCK_JOB, params: [msg.jobId] },
      {
        sql: FINISH_ATTEMPT,
        params: [...finishParams(a, msg, msg.outcome, msg.exitCode, msg.reason), this.kinds.withResults()],
      },
    ]);
    return finished.length === 1;
  }

  /** Applies a final result. Idempotent: a redelivered result for a finished attempt changes nothing. */
  async finished(a: AgentAddress, msg: JobFinished): Promise<void> {
    if (await this.finishFast(a, msg)) {
      jobTransitions.inc({ to: msg.outcome });
      this.updates.publish(a.tenantId, msg.jobId);
      this.dispatcher.kick(a.tenantId); // the agent has a free slot now
      return;
    }
    const outcome = await this.tx.tenant(a.tenantId, async (m) => {
      const cur = await this.lockCurrent(m, msg);
      const fenced = this.fenced(cur, msg, a.agentId);
      if (fenced) return { rejected: fenced };
      if (cur!.attempt_state !== 'DISPATCHED' && cur!.attempt_state !== 'RUNNING') return { duplicate: true };
      let reason = msg.reason;
      if (msg.outcome === 'SUCCEEDED') {
        const job = await m.findOneByOrFail(JobEntity, { id: msg.jobId });
        const kind = this.kinds.get(job.kind);
        const refused = refusedResult(job, kind, msg);
        if (refused) {
          this.reject('job.finished', a, msg, refused);
          await this.finish(m, a, msg, 'FAILED', msg.exitCode, `the agent's result was refused: ${refused}`);
          return { applied: true };
        }
        if (kind?.result && msg.result) {
          await m.query(`UPDATE jobs SET result = $2 WHERE id = $1`, [msg.jobId, JSON.stringify(msg.result)]);
          const note = await kind.onSucceeded?.(m, job, msg.result);
          if (note) reason = reason ? `${reason}; ${note}` : note;
        }
      }
      await this.finish(m, a, msg, msg.outcome, msg.exitCode, reason);
      return { applied: true };
    });
    if ('rejected' in outcome) return this.reject('job.finished', a, msg, outcome.rejected!);
    if ('applied' in outcome) {
      this.updates.publish(a.tenantId, msg.jobId);
      this.dispatcher.kick(a.tenantId); // the agent has a free slot now
    }
  }

  /**
   * The agent gives an attempt back unfinished because it is stopping (a deployment it served, a job
   * its drain timeout killed). The agent takes nothing more (capacity 0 until its heartbeats stop
   * saying it is stopping); the attempt ends RELEASED and does not count against maxAttempts; the
   * job is queued again and dispatched in the same transaction where another agent can take it. A
   * job whose cancel was asked ends CANCELLED instead, and one given back more than
   * MAX_RELEASES_PER_HOUR times within an hour ends FAILED. Fenced and idempotent like every report.
   */
  async released(a: AgentAddress, msg: JobReleased): Promise<void> {
    const outcome = await this.tx.tenant(a.tenantId, async (m) => {
      const cur = await this.lockCurrent(m, msg);
      const fenced = this.fenced(cur, msg, a.agentId);
      if (fenced) return { rejected: fenced };
      if (cur!.attempt_state !== 'DISPATCHED' && cur!.attempt_state !== 'RUNNING') return { duplicate: true };
      // The agent row before the attempt's: the lock order of heartbeats and assignments.
      await m.query(`UPDATE agents SET capacity = 0 WHERE id = $1`, [a.agentId]);
      if (cur!.cancel_requested) {
        await this.finish(m, a, msg, 'CANCELLED', null, `cancelled; its agent stopped first (${msg.reason})`);
        return { applied: true };
      }
      const [{ recent }]: { recent: number }[] = await m.query(
        `SELECT count(*)::int AS recent FROM job_attempts
          WHERE job_id = $1 AND state = 'RELEASED' AND finished_at > now() - interval '1 hour'`,
        [msg.jobId],
      );
      if (recent >= MAX_RELEASES_PER_HOUR) {
        const why = `given back by its agents ${recent + 1} times within an hour (last: ${msg.reason}); not queued again`;
        await this.finish(m, a, msg, 'FAILED', null, why);
        return { applied: true };
      }
      const [[{ number }]] = (await m.query(
        `UPDATE job_attempts SET state = 'RELEASED', reason = $2, finished_at = now() WHERE id = $1 RETURNING number`,
        [msg.attemptId, msg.reason],
      )) as [{ number: number }[], number];
      await m.query(
        `UPDATE jobs SET state = 'QUEUED', state_reason = $2, current_attempt_id = NULL, progress = ${PROGRESS_REQUEUED},
                updated_at = clock_timestamp()
          WHERE id = $1`,
        [msg.jobId, `attempt ${number} given back by agent ${a.agentId} (${msg.reason}); queued again`],
      );
      jobTransitions.inc({ to: 'QUEUED' });
      await this.dispatcher.tryAssign(m, await m.findOneByOrFail(JobEntity, { id: msg.jobId }));
      return { applied: true };
    });
    if ('rejected' in outcome) return this.reject('job.released', a, msg, outcome.rejected!);
    if ('applied' in outcome) {
      this.log.info(
        { ...a, jobId: msg.jobId, attemptId: msg.attemptId, reason: msg.reason },
        'attempt released',
      );
      this.updates.publish(a.tenantId, msg.jobId);
    }
  }

  /** In the full path, after the fence and the attempt's state were checked under the job lock. */
  private async finish(
    m: EntityManager,
    a: AgentAddress,
    ref: Ref,
    outcome: string,
    exitCode: number | null,
    reason: string | null,
  ) {
    // Whatever a success needed was checked above, under the lock: no kind is held back here.
    await m.query(FINISH_ATTEMPT, [...finishParams(a, ref, outcome, exitCode, reason), '{}']);
    jobTransitions.inc({ to: outcome });
  }

  private reject(type: string, a: AgentAddress, ref: Ref, reason: string) {
    staleResultsRejected.inc({ type });
    this.log.warn(
      { type, ...a, jobId: ref.jobId, attemptId: ref.attemptId, fencingToken: ref.fencingToken, reason },
      'agent report rejected',
    );
  }
}

function finishParams(
  a: AgentAddress,
  ref: Ref,
  outcome: string,
  exitCode: number | null,
  reason: string | null,
) {
  return [ref.jobId, ref.attemptId, a.agentId, ref.fencingToken, outcome, exitCode, reason];
}

/**
 * Why a success's result cannot be accepted for this job (`kind`: its kind's handler), or null: a
 * kind that produces a result needs one, of its kind, that its checks accept; a kind that produces
 * none must not send one.
 */
function refusedResult(job: JobEntity, kind: JobKindHandler | undefined, msg: JobFinished): string | null {
  if (!kind?.result) return msg.result ? `a ${job.kind} job has no ${msg.result.kind} result` : null;
  if (!msg.result) return `it reported success without a ${kind.result} result`;
  if (msg.result.kind !== kind.result) return `a ${job.kind} job cannot report a ${msg.result.kind} result`;
  return kind.verify?.(job, msg.result) ?? null;
}
