import { Inject, Injectable } from '@nestjs/common';
import { validate as isUuid, v7 as uuidv7 } from 'uuid';
import { encode, JobCancel, subjects } from '@hearth/contracts';
import { CONFIG, type Config } from '../../config/config.js';
import { allowsOn } from '../../platform/access/ability.js';
import { PermissionDeniedError } from '../../platform/access/access.errors.js';
import { scopeOf } from '../../platform/access/grants.js';
import { actorOf, AuditService } from '../../platform/audit/audit.service.js';
import type { Principal } from '../../platform/auth/principal.js';
import { OutboxMessage } from '../../platform/messaging/outbox-message.entity.js';
import { OutboxRelay } from '../../platform/messaging/outbox-relay.service.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { ProjectsService } from '../projects/projects.service.js';
import { Dispatcher } from './dispatcher.service.js';
import { JobEntity, TERMINAL_STATES } from './job.entity.js';
import { JobUpdates } from './job-updates.service.js';
import type { JobConnection, JobFilter, JobModel, SubmitJobInput } from './job.model.js';
import { JobKind, JobState } from './job.model.js';
import { InvalidCursorError, InvalidPageSizeError, JobNotFoundError } from './jobs.errors.js';

@Injectable()
export class JobsService {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(Dispatcher) private readonly dispatcher: Dispatcher,
    @Inject(OutboxRelay) private readonly relay: OutboxRelay,
    @Inject(JobUpdates) private readonly updates: JobUpdates,
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(ProjectsService) private readonly projects: ProjectsService,
  ) {}

  /** Writes the job and, when an agent is free, its attempt and dispatch message, in one transaction. */
  async submit(p: Principal, input: SubmitJobInput): Promise<JobModel> {
    const projectId = input.projectId ?? p.tokenProjectId;
    const job = await this.tx.tenant(p.tenantId, async (m) => {
      if (projectId) await this.projects.require(m, projectId);
      if (!allowsOn(p.ability, 'jobs:submit', projectId))
        throw new PermissionDeniedError(
          `jobs:submit${projectId ? ' in that project' : ' outside a project'}`,
        );
      const row: JobEntity = m.create(JobEntity, {
        id: uuidv7(),
        tenantId: p.tenantId,
        kind: 'COMMAND',
        command: input.command,
        env: Object.fromEntries((input.env ?? []).map((e) => [e.name, e.value])),
        timeoutSeconds: input.timeoutSeconds ?? 3600,
        maxAttempts: input.maxAttempts ?? 3,
        agentSelector: {
          ...(input.agentSelector?.agentIds ? { agentIds: input.agentSelector.agentIds } : {}),
          labels: Object.fromEntries((input.agentSelector?.labels ?? []).map((l) => [l.key, l.value])),
        },
        state: 'QUEUED',
        stateReason: null,
        attempts: 0,
        currentAttemptId: null,
        agentId: null,
        projectId,
        exitCode: null,
        logTail: '',
        logDroppedLines: 0,
        createdBy: p.userId,
      });
      const [{ created_at }]: { created_at: Date }[] = await m
        .createQueryBuilder()
        .insert()
        .into(JobEntity)
        .values(row)
        .returning('created_at')
        .execute()
        .then((r) => r.raw as { created_at: Date }[]);
      Object.assign(row, { createdAt: created_at, updatedAt: created_at, startedAt: null, finishedAt: null });
      await this.dispatcher.tryAssign(m, row);
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'job.submit',
        target: { type: 'job', id: row.id },
        // Env values may be secrets: only their names are recorded.
        changes: {
          command: row.command,
          projectId,
          envNames: Object.keys(row.env),
          timeoutSeconds: row.timeoutSeconds,
          maxAttempts: row.maxAttempts,
          agentSelector: row.agentSelector,
        },
      });
      return row;
    });
    if (job.state === 'DISPATCHED') this.relay.kick();
    this.updates.publish(job.tenantId, job.id);
    return toJobModel(job);
  }

  /**
   * Cancels a job. A queued job is cancelled at once; a dispatched or running one is asked to stop
   * (the agent sends SIGTERM, then SIGKILL after the grace period) and turns CANCELLED when the agent
   * reports back, or when its lease runs out. Cancelling a finished job changes nothing.
   */
  async cancel(p: Principal, id: string): Promise<JobModel> {
    if (!isUuid(id)) throw new JobNotFoundError(id);
    const { job, sent } = await this.tx.tenant(p.tenantId, async (m) => {
      const found = await m.findOne(JobEntity, { where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!found || !allowsOn(p.ability, 'jobs:read', found.projectId)) throw new JobNotFoundError(id);
      if (!allowsOn(p.ability, 'jobs:cancel', found.projectId))
        throw new PermissionDeniedError('jobs:cancel');
      if (TERMINAL_STATES.includes(found.state) || found.cancelRequestedAt)
        return { job: found, sent: false };
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'job.cancel',
        target: { type: 'job', id },
        changes: { stateBefore: found.state },
      });
      if (found.state === 'QUEUED') {
        await m.query(
          `UPDATE jobs SET state = 'CANCELLED', state_reason = 'cancelled before dispatch', cancel_requested_at = now(),
                  finished_at = now(), updated_at = clock_timestamp() WHERE id = $1`,
          [id],
        );
        return { job: await m.findOneByOrFail(JobEntity, { id }), sent: false };
      }
      const [attempt]: { fencing_token: string }[] = await m.query(
        `SELECT fencing_token FROM job_attempts WHERE id = $1`,
        [found.currentAttemptId],
      );
      await m.query(
        `UPDATE jobs SET cancel_requested_at = now(), state_reason = 'cancel requested', updated_at = clock_timestamp()
          WHERE id = $1`,
        [id],
      );
      await m.insert(OutboxMessage, {
        tenantId: p.tenantId,
        subject: subjects.control({ tenantId: p.tenantId, agentId: found.agentId! }),
        msgId: `cancel-${found.currentAttemptId}`,
        payload: Buffer.from(
          encode(JobCancel, {
            type: 'job.cancel',
            v: 1,
            jobId: id,
            attemptId: found.currentAttemptId!,
            fencingToken: Number(attempt.fencing_token),
            graceSeconds: this.config.jobs.cancelGraceSeconds,
          }),
        ),
      });
      return { job: await m.findOneByOrFail(JobEntity, { id }), sent: true };
    });
    if (sent) this.relay.kick();
    this.updates.publish(p.tenantId, id);
    return toJobModel(job);
  }

  async get(p: Principal, id: string): Promise<JobModel> {
    if (!isUuid(id)) throw new JobNotFoundError(id);
    const job = await this.tx.tenant(p.tenantId, (m) => m.findOneBy(JobEntity, { id }));
    // A job in a project the caller cannot read is as invisible as another tenant's.
    if (!job || !allowsOn(p.ability, 'jobs:read', job.projectId)) throw new JobNotFoundError(id);
    return toJobModel(job);
  }

  /** Newest first, keyset-paginated on the id (UUIDv7: time-ordered). */
  async list(
    p: Principal,
    first = 50,
    after?: string | null,
    filter?: JobFilter | null,
  ): Promise<JobConnection> {
    if (!Number.isInteger(first) || first < 1 || first > 200) throw new InvalidPageSizeError();
    const cursor = after ? decodeCursor(after) : null;
    const readable = scopeOf(p.grants, 'jobs:read');
    if (readable !== 'organization' && readable.length === 0) return emptyPage();
    const rows = await this.tx.tenant(p.tenantId, (m) => {
      const q = m.createQueryBuilder(JobEntity, 'j');
      if (readable !== 'organization') q.andWhere('j.project_id IN (:...readable)', { readable });
      if (filter?.projectId) q.andWhere('j.project_id = :projectId', { projectId: filter.projectId });
      if (filter?.states?.length) q.andWhere('j.state IN (:...states)', { states: filter.states });
      if (filter?.agentId) q.andWhere('j.agent_id = :agentId', { agentId: filter.agentId });
      if (cursor) q.andWhere('j.id < :cursor', { cursor });
      return q
        .orderBy('j.id', 'DESC')
        .limit(first + 1)
        .getMany();
    });
    const page = rows.slice(0, first);
    const edges = page.map((j) => ({ cursor: encodeCursor(j), node: toJobModel(j) }));
    return { edges, pageInfo: { hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null } };
  }
}

export function toJobModel(j: JobEntity): JobModel {
  return {
    id: j.id,
    kind: JobKind.COMMAND,
    state: j.state as JobState,
    projectId: j.projectId,
    stateReason: j.stateReason,
    command: j.command,
    exitCode: j.exitCode,
    attempts: j.attempts,
    maxAttempts: j.maxAttempts,
    timeoutSeconds: j.timeoutSeconds,
    agent: j.agentId ? { id: j.agentId } : null,
    logTail: j.logTail,
    createdAt: j.createdAt,
    startedAt: j.startedAt,
    finishedAt: j.finishedAt,
  };
}

function emptyPage(): JobConnection {
  return { edges: [], pageInfo: { hasNextPage: false, endCursor: null } };
}

function encodeCursor(j: JobEntity): string {
  return Buffer.from(`job:${j.id}`).toString('base64url');
}

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8').replace(/^job:/, '');
  if (!isUuid(id)) throw new InvalidCursorError();
  return id;
}
