/**
 * The only way the control plane touches tenant-owned rows. Each unit of work is one transaction
 * that first switches to the app role and sets the tenant for that transaction only
 * (set_config(…, true)), so row-level security filters every statement and nothing leaks to the next
 * user of a pooled connection. System work (token lookup, outbox relay, lease sweep) runs as
 * hearth_system, whose policy is explicit in the migration, never as a BYPASSRLS role.
 */
import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import { requestContext } from '../logging/request-context.js';

export const APP_ROLE = 'hearth_app';
export const SYSTEM_ROLE = 'hearth_system';

export type Work<T> = (m: EntityManager) => Promise<T>;

@Injectable()
export class Transactions {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  /** Runs `work` as the app role, scoped to one tenant. */
  tenant<T>(tenantId: string, work: Work<T>): Promise<T> {
    return this.ds.transaction(async (m) => {
      await m.query(`SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true)`, [
        APP_ROLE,
        tenantId,
      ]);
      const ctx = requestContext();
      if (ctx && !ctx.tenantId) ctx.tenantId = tenantId;
      return work(m);
    });
  }

  /**
   * Inside a tenant transaction, runs `work` briefly as the system role, then restores the tenant
   * scope. For the rare read that must span tenants within one atomic change (the NATS account's
   * revocation list). Same transaction, so no second connection is needed.
   */
  async elevated<T>(m: EntityManager, tenantId: string, work: Work<T>): Promise<T> {
    await m.query(`SELECT set_config('role', $1, true), set_config('app.tenant_id', '', true)`, [
      SYSTEM_ROLE,
    ]);
    try {
      return await work(m);
    } finally {
      await m.query(`SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true)`, [
        APP_ROLE,
        tenantId,
      ]);
    }
  }

  /** Runs `work` with cross-tenant reach. Only for the platform's own duties; never with user input as the scope. */
  system<T>(work: Work<T>): Promise<T> {
    return this.ds.transaction(async (m) => {
      await m.query(`SELECT set_config('role', $1, true), set_config('app.tenant_id', '', true)`, [
        SYSTEM_ROLE,
      ]);
      return work(m);
    });
  }
}
