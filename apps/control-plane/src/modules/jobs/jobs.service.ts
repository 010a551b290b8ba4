import { Inject, Injectable } from '@nestjs/common';
import { validate as isUuid, v7 as uuidv7 } from 'uuid';
import type { EntityManager } from 'typeorm';
import { ZodError } from 'zod';
import {
  encode,
  JobCancel,
  JobDispatch,
  MAX_MESSAGE_BYTES,
  MessageTooLargeError,
  subjects,
  TrainSpec,
} from '@hearth/contracts';
import { CONFIG, type Config } from '../../config/config.js';
import { allowsOn } from '../../platform/access/ability.js';
import { PermissionDeniedError } from '../../platform/access/access.errors.js';
import { scopeOf } from '../../platform/access/grants.js';
import { actorOf, AuditService, type AuditActor } from '../../platform/audit/audit.service.js';
import type { Principal } from '../../platform/auth/principal.js';
import { OutboxMessage } from '../../platform/messaging/outbox-message.entity.js';
import { OutboxRelay } from '../../platform/messaging/outbox-relay.service.js';
import { InvalidInputError } from '../../platform/errors/domain-error.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { ProjectsService } from '../projects/projects.service.js';
import { Dispatcher, dispatchOf } from './dispatcher.service.js';
import { JobKinds } from './job-kinds.js';
import { JobEntity, TERMINAL_STATES, type JobKindName, type JobSpec } from './job.entity.js';
import { JobUpdates } from './job-updates.service.js';
import type { JobConnection, JobFilter, JobModel, SubmitJobInput } from './job.model.js';
import { GpuVendor, JobKind, JobState } from './job.model.js';
import { InvalidCursorError, InvalidPageSizeError, JobNotFoundError } from './jobs.errors.js';

const fieldOf = { COMMAND: 'command', TRAIN: 'train', BATCH_PREDICT: 'batchPredict' } as const;

/** What a new job is made of; the rest starts the same for every job. */
export interface NewJob {
  kind: JobKindName;
  command: string[] | null;
  spec: JobSpec | null;
  projectId: string | null;
  env: Record<string, string>;
  timeoutSeconds: number | null;
  maxAttempts: number;
  agentSelector: { agentIds?: string[]; labels?: Record<string, string> };
  /** GPUs the job needs (default none), and of which vendor (default any). */
  gpus?: number;
  gpuVendor?: 'nvidia' | 'amd' | null;
}

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
    @Inject(JobKinds) private readonly kinds: JobKinds,
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
      const { command, spec } = await this.kindInput(m, p, input, projectId);
      return this.create(m, p, {
        kind: input.kind,
        command,
        spec,
        projectId,
        env: Object.fromEntries((input.env ?? []).map((e) => [e.name, e.value])),
        timeoutSeconds: input.timeoutSeconds ?? 3600,
        maxAttempts: input.maxAttempts ?? 3,
        gpus: input.gpus ?? 0,
        gpuVendor: input.gpuVendor ?? null,
        agentSelector: {
          ...(input.agentSelector?.agentIds ? { agentIds: input.agentSelector.agentIds } : {}),
          labels: Object.fromEntries((input.agentSelector?.labels ?? []).map((l) => [l.key, l.value])),
        },
      });
    });
    this.announce(job);
    return toJobModel(job);
  }

  /**
   * Each field has its bound, but together they could still make a dispatch no agent accepts
   * (MAX_MESSAGE_BYTES): refused at submit, not when an agent is found. Measured with the widest
   * fencing token, since an attempt given back does not count against maxAttempts.
   */
  private assertDispatchFits(job: JobEntity) {
    try {
      encode(
        JobDispatch,
        dispatchOf(job, {
          attemptId: job.id,
          fencingToken: 2 ** 31 - 1,
          cancelGraceSeconds: this.config.jobs.cancelGraceSeconds,
        }),
      );
    } catch (err) {
      if (err instanceof ZodError) {
        // The input types should refuse all of this first; if one misses a rule, the caller still
        // learns what to fix.
        const issue = err.issues[0];
        throw new InvalidInputError(
          `the job cannot be sent to an agent: ${issue.path.join('.')}: ${issue.message}`,
        );
      }
      if (!(err instanceof MessageTooLargeError)) throw err;
      throw new InvalidInputError(
        `the job is too large to send to an agent: command, env and spec take ${err.bytes} bytes, at most ${MAX_MESSAGE_BYTES}`,
      );
    }
  }

  /**
   * In the caller's transaction: writes a job (audited as the caller) and dispatches it when an agent
   * is free. Call announce() after the transaction commits.
   */
  async create(m: EntityManager, p: Principal, fields: NewJob): Promise<JobEntity> {
    const row: JobEntity = m.create(JobEntity, {
      id: uuidv7(),
      tenantId: p.tenantId,
      ...fields,
      gpus: fields.gpus ?? 0,
      gpuVendor: fields.gpuVendor ?? null,
      state: 'QUEUED',
      stateReason: null,
      attempts: 0,
      currentAttemptId: null,
      agentId: null,
      exitCode: null,
      logTail: '',
      logDroppedLines: 0,
      progress: {},
      result: null,
      createdBy: p.userId,
    });
    this.assertDispatchFits(row);
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
        kind: row.kind,
        command: row.command,
        spec: row.spec,
        projectId: row.projectId,
        envNames: Object.keys(row.env),
        timeoutSeconds: row.timeoutSeconds,
        maxAttempts: row.maxAttempts,
        agentSelector: row.agentSelector,
        gpus: row.gpus,
        gpuVendor: row.gpuVendor,
      },
    });
    return row;
  }

  /** After the creating transaction committed: tell subscribers (its dispatch went out on commit). */
  announce(job: JobEntity): void {
    this.updates.publish(job.tenantId, job.id);
  }

  /** The kind-specific part of a submission, validated: the command, or the spec the agent gets. */
  private async kindInput(
    m: EntityManager,
    p: Principal,
    input: SubmitJobInput,
    projectId: string | null,
  ): Promise<{ command: string[] | null; spec: JobSpec | null }> {
    const given = { COMMAND: !!input.command, TRAIN: !!input.train, BATCH_PREDICT: !!input.batchPredict };
    for (const [kind, present] of Object.entries(given))
      if (present && kind !== input.kind)
        throw new InvalidInputError(`${fieldOf[kind as keyof typeof fieldOf]} is only for ${kind} jobs`);
    switch (input.kind) {
      case JobKind.COMMAND:
        if (!input.command) throw new InvalidInputError('command is required for COMMAND jobs');
        // Arguments may be empty; the program may not (the agent could only fail to start it).
        if (input.command[0].trim() === '') throw new InvalidInputError('command[0] must name a program');
        return { command: input.command, spec: null };
      case JobKind.TRAIN: {
        if (!input.train) throw new InvalidInputError('train is required for TRAIN jobs');
        const t = input.train;
        const parsed = TrainSpec.safeParse({
          dataset: { uri: t.datasetUri, ...(t.datasetFormat ? { format: t.datasetFormat } : {}) },
          target: t.target,
          ...(t.features ? { features: t.features } : {}),
          task: t.task,
          model: t.model === 'mlp' ? { type: 'mlp', hiddenLayers: t.hiddenLayers ?? [] } : { type: t.model },
          ...(t.epochs !== undefined ? { epochs: t.epochs } : {}),
          ...(t.batchSize !== undefined ? { batchSize: t.batchSize } : {}),
          ...(t.learningRate !== undefined ? { learningRate: t.learningRate } : {}),
          ...(t.validationSplit !== undefined ? { validationSplit: t.validationSplit } : {}),
          ...(t.seed !== undefined ? { seed: t.seed } : {}),
        });
        if (!parsed.success) {
          const issue = parsed.error.issues[0];
          throw new InvalidInputError(`train.${issue.path.join('.')}: ${issue.message}`);
        }
        const spec: JobSpec = { train: parsed.data, modelName: t.modelName };
        const extra = await this.kinds.get('TRAIN')?.prepare?.(m, p, input, projectId);
        return { command: null, spec: { ...spec, ...extra } };
      }
      case JobKind.BATCH_PREDICT: {
        if (!input.batchPredict)
          throw new InvalidInputError('batchPredict is required for BATCH_PREDICT jobs');
        const prepare = this.kinds.get('BATCH_PREDICT')?.prepare;
        if (!prepare) throw new InvalidInputError('BATCH_PREDICT jobs are not available');
        return { command: null, spec: await prepare(m, p, input, projectId) };
      }
      case JobKind.SERVE:
        throw new InvalidInputError('SERVE jobs are created by deployModel');
    }
  }

  /**
   * Cancels a job. A queued job is cancelled at once; a dispatched or running one is asked to stop
   * (the agent sends SIGTERM, then SIGKILL after the grace period) and turns CANCELLED when the agent
   * reports back, or when its lease runs out. Cancelling a finished job changes nothing.
   */
  async cancel(p: Principal, id: string): Promise<JobModel> {
    if (!isUuid(id)) throw new JobNotFoundError(id);
    const { job } = await this.tx.tenant(p.tenantId, async (m) => {
      const found = await m.findOne(JobEntity, { where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!found || !allowsOn(p.ability, 'jobs:read', found.projectId)) throw new JobNotFoundError(id);
      if (!allowsOn(p.ability, 'jobs:cancel', found.projectId))
        throw new PermissionDeniedError('jobs:cancel');
      return this.requestCancel(m, found, actorOf(p), 'cancelled before dispatch');
    });
    this.announceCancel(job);
    return toJobModel(job);
  }

  /**
   * In the caller's transaction, on a job it locked and was allowed to stop: a queued job is cancelled
   * at once, a dispatched or running one is asked to stop. Audited as the given actor.
   */
  async requestCancel(
    m: EntityManager,
    found: JobEntity,
    actor: AuditActor,
    queuedReason: string,
  ): Promise<{ job: JobEntity; sent: boolean }> {
    const id = found.id;
    if (TERMINAL_STATES.includes(found.state) || found.cancelRequestedAt) return { job: found, sent: false };
    await this.audit.record(m, found.tenantId, actor, {
      action: 'job.cancel',
      target: { type: 'job', id },
      changes: { stateBefore: found.state },
    });
    if (found.state === 'QUEUED') {
      await m.query(
        `UPDATE jobs SET state = 'CANCELLED', state_reason = $2, cancel_requested_at = now(),
                finished_at = now(), updated_at = clock_timestamp() WHERE id = $1`,
        [id, queuedReason],
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
    const cancel = {
      subject: subjects.control({ tenantId: found.tenantId, agentId: found.agentId! }),
      msgId: `cancel-${found.currentAttemptId}`,
      payload: encode(JobCancel, {
        type: 'job.cancel',
        v: 1,
        jobId: id,
        attemptId: found.currentAttemptId!,
        fencingToken: Number(attempt.fencing_token),
        graceSeconds: this.config.jobs.cancelGraceSeconds,
      }),
    };
    await m.insert(OutboxMessage, {
      ...cancel,
      tenantId: found.tenantId,
      payload: Buffer.from(cancel.payload),
    });
    this.relay.publishOnCommit(m, cancel);
    return { job: await m.findOneByOrFail(JobEntity, { id }), sent: true };
  }

  /** After a cancelling transaction committed. */
  announceCancel(job: JobEntity): void {
    this.updates.publish(job.tenantId, job.id);
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
    kind: j.kind as JobKind,
    state: j.state as JobState,
    projectId: j.projectId,
    stateReason: j.stateReason,
    command: j.command,
    exitCode: j.exitCode,
    attempts: j.attempts,
    maxAttempts: j.maxAttempts,
    gpus: j.gpus,
    gpuVendor: j.gpuVendor as GpuVendor | null,
    timeoutSeconds: j.timeoutSeconds,
    backend: j.progress.backend ?? null,
    trainEpochs: (j.progress.epochs ?? []).map((e) => ({
      epoch: e.epoch,
      loss: e.loss,
      valLoss: e.valLoss,
      accuracy: e.accuracy ?? null,
      auc: e.auc ?? null,
      rmse: e.rmse ?? null,
      mae: e.mae ?? null,
    })),
    spec: j.spec ? JSON.stringify(j.spec) : null,
    result: j.result ? JSON.stringify(j.result) : null,
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
