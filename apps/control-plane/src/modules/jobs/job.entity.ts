import { Column, Entity, PrimaryColumn } from 'typeorm';
import type {
  BatchPredictSpec,
  JobFinished,
  ServeMetrics,
  ServeSpec,
  TrainBackend,
  TrainEpochMetrics,
  TrainSpec,
} from '@hearth/contracts';
import { bigintAsNumber } from '../../platform/database/columns.js';

export const JOB_KINDS = ['COMMAND', 'TRAIN', 'BATCH_PREDICT', 'SERVE'] as const;
export type JobKindName = (typeof JOB_KINDS)[number];

/** A job's kind-specific input. */
export interface JobSpec {
  train?: TrainSpec;
  /** TRAIN: the model a successful run registers a version of. */
  modelName?: string;
  batchPredict?: BatchPredictSpec;
  serve?: ServeSpec;
}

/**
 * SQL: a job's progress once it is queued again. What its last attempt reported (the endpoint it
 * served on, its backend and epochs) went with that attempt: a deployment is READY again only when
 * the next attempt reports its own endpoint. A deployment's last request metrics stay until then.
 */
export const PROGRESS_REQUEUED = `jsonb_strip_nulls(jsonb_build_object('serveMetrics', progress->'serveMetrics'))`;

/** The latest of what the agent reported while the job ran. */
export interface JobProgressState {
  backend?: TrainBackend;
  epochs?: TrainEpochMetrics[];
  endpoint?: string;
  executionProvider?: 'cuda' | 'cpu';
  serveMetrics?: ServeMetrics & { at: string };
}

export const JOB_STATES = [
  'QUEUED',
  'DISPATCHED',
  'RUNNING',
  'SUCCEEDED',
  'FAILED',
  'CANCELLED',
  'TIMED_OUT',
] as const;
export type JobStateName = (typeof JOB_STATES)[number];
export const TERMINAL_STATES: readonly JobStateName[] = ['SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'];

@Entity('jobs')
export class JobEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('text') kind!: JobKindName;
  /** COMMAND only. */
  @Column('jsonb', { nullable: true }) command!: string[] | null;
  @Column('jsonb') env!: Record<string, string>;
  /** Null for SERVE: a deployment runs until it is stopped. */
  @Column('integer', { name: 'timeout_seconds', nullable: true }) timeoutSeconds!: number | null;
  @Column('integer', { name: 'max_attempts' }) maxAttempts!: number;
  @Column('jsonb', { name: 'agent_selector' }) agentSelector!: {
    agentIds?: string[];
    labels?: Record<string, string>;
  };
  @Column('text') state!: JobStateName;
  @Column('text', { name: 'state_reason', nullable: true }) stateReason!: string | null;
  @Column('integer') attempts!: number;
  @Column('uuid', { name: 'current_attempt_id', nullable: true }) currentAttemptId!: string | null;
  @Column('uuid', { name: 'agent_id', nullable: true }) agentId!: string | null;
  @Column('uuid', { name: 'project_id', nullable: true }) projectId!: string | null;
  @Column('integer', { name: 'exit_code', nullable: true }) exitCode!: number | null;
  @Column('text', { name: 'log_tail' }) logTail!: string;
  @Column('bigint', { name: 'log_dropped_lines', transformer: bigintAsNumber }) logDroppedLines!: number;
  @Column('uuid', { name: 'created_by' }) createdBy!: string;
  @Column('timestamptz', { name: 'created_at' }) createdAt!: Date;
  @Column('timestamptz', { name: 'updated_at' }) updatedAt!: Date;
  @Column('timestamptz', { name: 'started_at', nullable: true }) startedAt!: Date | null;
  @Column('timestamptz', { name: 'finished_at', nullable: true }) finishedAt!: Date | null;
  @Column('timestamptz', { name: 'cancel_requested_at', nullable: true }) cancelRequestedAt!: Date | null;
  /** The kind's input as the agent receives it, plus control-plane-only fields (see JobSpec). */
  @Column('jsonb', { nullable: true }) spec!: JobSpec | null;
  /** What the agent reported while it ran. */
  @Column('jsonb') progress!: JobProgressState;
  /** What a successful TRAIN or BATCH_PREDICT produced (metadata only). */
  @Column('jsonb', { nullable: true }) result!: JobFinished['result'] | null;
  /** Whole GPUs the job needs on its agent (0: none), and of which vendor (null: any). */
  @Column('integer') gpus!: number;
  @Column('text', { name: 'gpu_vendor', nullable: true }) gpuVendor!: 'nvidia' | 'amd' | null;
}
