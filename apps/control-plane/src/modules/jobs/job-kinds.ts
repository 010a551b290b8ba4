/**
 * Job kinds that other modules complete. The jobs module runs every kind the same way (queue, lease,
 * dispatch, events); what a kind needs beyond that — building its spec from the request (a model
 * lookup for BATCH_PREDICT), applying its result (registering a model version for TRAIN) — is a
 * handler a feature module registers here at start-up. The jobs module thus never imports those
 * modules, and they depend on it, one way.
 */
import { Injectable } from '@nestjs/common';
import type { JobFinished } from '@hearth/contracts';
import type { EntityManager } from 'typeorm';
import type { Principal } from '../../platform/auth/principal.js';
import type { JobEntity, JobKindName, JobSpec } from './job.entity.js';
import type { SubmitJobInput } from './job.model.js';

export type JobResult = NonNullable<JobFinished['result']>;

export interface JobKindHandler {
  /** In the submit transaction: validate the request and build the job's spec; throw a DomainError to refuse. */
  prepare?(m: EntityManager, p: Principal, input: SubmitJobInput, projectId: string | null): Promise<JobSpec>;
  /** The result a successful job of this kind reports; a success without it ends the job FAILED. */
  result?: JobResult['kind'];
  /**
   * Checks a result of that kind against the job (the agent is untrusted): why it cannot be
   * accepted, or null. A refused result ends the job FAILED with that reason.
   */
  verify?(job: JobEntity, result: JobResult): string | null;
  /**
   * In the transaction that marks the job SUCCEEDED: apply its result. Returns a note for the job's
   * state reason (e.g. "registered churn v3"), or null.
   */
  onSucceeded?(m: EntityManager, job: JobEntity, result: JobResult): Promise<string | null>;
}

@Injectable()
export class JobKinds {
  private readonly handlers = new Map<JobKindName, JobKindHandler>();
  /** withResults()'s answer, made once (it is asked on every job's finish); reset by register. */
  private resultKinds: string | null = null;

  register(kind: JobKindName, handler: JobKindHandler): void {
    this.handlers.set(kind, { ...this.handlers.get(kind), ...handler });
    this.resultKinds = null;
  }

  get(kind: JobKindName): JobKindHandler | undefined {
    return this.handlers.get(kind);
  }

  /** The kinds whose success must come with a result, as a Postgres text[] literal. */
  withResults(): string {
    return (this.resultKinds ??= `{${[...this.handlers]
      .filter(([, h]) => h.result)
      .map(([kind]) => kind)
      .join(',')}}`);
  }
}
