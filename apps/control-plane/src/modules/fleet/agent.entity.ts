import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';
import type { GpuInfo } from '@hearth/contracts';
import { bigintAsNumber } from '../../platform/database/columns.js';

@Entity('agents')
export class AgentEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  /** The agent's NATS user public key; its private half never left the agent. */
  @Column('text', { name: 'public_key' }) publicKey!: string;
  @Column('text') hostname!: string;
  @Column('text') os!: string;
  @Column('text') arch!: string;
  @Column('integer') cpus!: number;
  @Column('bigint', { name: 'memory_bytes', transformer: bigintAsNumber }) memoryBytes!: number;
  @Column('jsonb') gpus!: GpuInfo[];
  @Column('text', { name: 'agent_version' }) agentVersion!: string;
  @Column('jsonb') labels!: Record<string, string>;
  /** Jobs the agent runs at once (its free slots plus what it runs, as of its last heartbeat). */
  @Column('integer') capacity!: number;
  @Column('timestamptz', { name: 'last_heartbeat_at', nullable: true }) lastHeartbeatAt!: Date | null;
  @Column('timestamptz', { name: 'revoked_at', nullable: true }) revokedAt!: Date | null;
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
}
