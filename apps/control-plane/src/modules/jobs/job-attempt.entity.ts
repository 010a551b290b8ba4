import { Column, Entity, PrimaryColumn } from 'typeorm';
import { bigintAsNumber } from '../../platform/database/columns.js';

export type AttemptState =
  'DISPATCHED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | 'TIMED_OUT' | 'LOST' | 'RELEASED';

/** One try of a job on one agent. Its fencing token is what makes a late result from it harmless. */
@Entity('job_attempts')
export class JobAttemptEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('uuid', { name: 'job_id' }) jobId!: string;
  @Column('integer') number!: number;
  @Column('bigint', { name: 'fencing_token', transformer: bigintAsNumber }) fencingToken!: number;
  @Column('uuid', { name: 'agent_id' }) agentId!: string;
  @Column('text') state!: AttemptState;
  @Column('timestamptz', { name: 'lease_expires_at' }) leaseExpiresAt!: Date;
  @Column('integer', { name: 'exit_code', nullable: true }) exitCode!: number | null;
  @Column('text', { nullable: true }) reason!: string | null;
  @Column('timestamptz', { name: 'created_at' }) createdAt!: Date;
  @Column('timestamptz', { name: 'started_at', nullable: true }) startedAt!: Date | null;
  @Column('timestamptz', { name: 'finished_at', nullable: true }) finishedAt!: Date | null;
}
