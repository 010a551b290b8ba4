import { Column, Entity, PrimaryColumn } from 'typeorm';
import { bigintAsNumber } from '../../platform/database/columns.js';

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
  @Column('text') kind!: 'COMMAND';
  @Column('jsonb') command!: string[];
  @Column('jsonb') env!: Record<string, string>;
  @Column('integer', { name: 'timeout_seconds' }) timeoutSeconds!: number;
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
}
