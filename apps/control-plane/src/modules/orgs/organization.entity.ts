import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

/** The tenant root: an organization's id is the tenant id of everything it owns. */
@Entity('organizations')
export class Organization {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') name!: string;
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
}
