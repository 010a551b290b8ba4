/**
 * The only way the control plane touches tenant-owned rows. Each unit of work is one transaction
 * that first switches to the app role and sets the tenant for that transaction only
 * (set_config(…, true)), so row-level security filters every statement and nothing leaks to the next
 * user of a pooled connection. System work (token lookup, outbox relay, lease sweep) runs as
 * hearth_system, whose policy is explicit in the migration, never as a BYPASSRLS role.
 */
import { validate as isUuid } from 'uuid';
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
    if (!isUuid(tenantId)) throw new Error(`not a tenant id: ${JSON.stringify(tenantId)}`);
    const ctx = requestContext();
    if (ctx && !ctx.tenantId) ctx.tenantId = tenantId;
    // The id is a checked UUID, so it can be inlined: BEGIN and the scope then share one round trip.
    return this.run(
      `SELECT set_config('role', '${APP_ROLE}', true), set_config('app.tenant_id', '${tenantId}', true)`,
      work,
    );
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
    return this.run(
      `SELECT set_config('role', '${SYSTEM_ROLE}', true), set_config('app.tenant_id', '', true)`,
      work,
    );
  }

  /**
   * One transaction on one pooled connection. BEGIN and the scope go as one simple-protocol message
   * (this is on every request's path, and each round trip costs a syscall pair on both sides).
   */
  private async run<T>(scope: string, work: Work<T>): Promise<T> {
    const qr = this.ds.createQueryRunner();
    await qr.connect();
    try {
      await qr.query(`BEGIN; ${scope}`);
      // TypeORM must know (pessimistic locks require it; its helpers must not open a nested one).
      (qr as { isTransactionActive: boolean }).isTransactionActive = true;
      const result = await work(qr.manager);
      await qr.query('COMMIT');
      return result;
    } catch (err) {
      await qr.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      (qr as { isTransactionActive: boolean }).isTransactionActive = false;
      await qr.release();
    }
  }
}
