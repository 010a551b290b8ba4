import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** A message to publish, written in the same transaction as the state change it announces. */
@Entity('outbox')
export class OutboxMessage {
  @PrimaryGeneratedColumn({ type: 'bigint' }) id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('text') subject!: string;
  /** JetStream message id: the server drops a second publish with the same id (relay retries). */
  @Column('text', { name: 'msg_id' }) msgId!: string;
  @Column('bytea') payload!: Buffer;
  @Column('timestamptz', { name: 'created_at', default: () => 'clock_timestamp()' }) createdAt!: Date;
  @Column('timestamptz', { name: 'published_at', nullable: true }) publishedAt!: Date | null;
  @Column('integer', { name: 'publish_tries', default: 0 }) publishTries!: number;
  @Column('text', { name: 'last_error', nullable: true }) lastError!: string | null;
}
