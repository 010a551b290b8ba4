/**
 * The only way the control plane touches tenant-owned rows. Each unit of work is one transaction
 * that first switches to the app role and sets the tenant for that transaction only
 * (set_config(…, true)), so row-level security filters every statement and nothing leaks to the next
 * user of a pooled connection. System work (token lookup, outbox relay, lease sweep) runs as
 * hearth_system, whose policy is explicit in the migration, never as a BYPASSRLS role.
 */
import { validate as isUuid } from 'uuid';
import { Inject, Injectable } from '@nestjs/common';
import pg from 'pg';
import { DataSource, type EntityManager } from 'typeorm';
import { requestContext } from '../logging/request-context.js';

export const APP_ROLE = 'hearth_app';
export const SYSTEM_ROLE = 'hearth_system';

export type Work<T> = (m: EntityManager) => Promise<T>;

/** A statement for Transactions.oneRoundTrip; $1… stand for `params`. */
export interface Statement {
  sql: string;
  params?: readonly (string | number | boolean | null)[];
}

@Injectable()
export class Transactions {
  /** What to do once the transaction of an entity manager has committed (see afterCommit). */
  private readonly committed = new WeakMap<EntityManager, (() => void)[]>();

  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  /**
   * Runs `fn` right after the transaction of `m` commits (never if it rolls back), before the
   * transaction's result is returned. For work that must only follow a commit, such as publishing
   * the outbox rows it wrote. `fn` must not throw.
   */
  afterCommit(m: EntityManager, fn: () => void): void {
    const hooks = this.committed.get(m);
    if (!hooks) throw new Error('afterCommit outside a transaction of Transactions');
    hooks.push(fn);
  }

  /** Runs `work` as the app role, scoped to one tenant. */
  tenant<T>(tenantId: string, work: Work<T>): Promise<T> {
    const scope = tenantScope(tenantId);
    const ctx = requestContext();
    if (ctx && !ctx.tenantId) ctx.tenantId = tenantId;
    return this.run(scope, work);
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

  /**
   * A tenant-scoped transaction in one round trip, for the hot paths (an agent's claim and result):
   * the scope and the statements go as one simple-protocol message, which Postgres runs as one
   * implicit transaction, all or nothing, in order. `run` takes two round trips more (BEGIN is
   * folded into the first already; the work, then COMMIT). The simple protocol has no parameters, so
   * values are inlined as literals, escaped by pg's escapeLiteral (numbers must be finite). Returns
   * the rows of each statement.
   */
  async oneRoundTrip(
    tenantId: string,
    statements: readonly Statement[],
  ): Promise<Record<string, unknown>[][]> {
    const text = [tenantScope(tenantId), ...statements.map((s) => inline(s.sql, s.params ?? []))].join(';\n');
    const qr = this.ds.createQueryRunner();
    const client = (await qr.connect()) as pg.PoolClient;
    try {
      const results = (await client.query(text)) as unknown as pg.QueryResult[];
      return results.slice(1).map((r) => r.rows as Record<string, unknown>[]);
    } finally {
      await qr.release();
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
      const hooks: (() => void)[] = [];
      this.committed.set(qr.manager, hooks);
      const result = await work(qr.manager);
      await qr.query('COMMIT');
      for (const hook of hooks) hook();
      return result;
    } catch (err) {
      await qr.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      this.committed.delete(qr.manager);
      (qr as { isTransactionActive: boolean }).isTransactionActive = false;
      await qr.release();
    }
  }
}

/**
 * The statement that scopes a transaction to a tenant. The id is a checked UUID, so it can be
 * inlined: the scope then travels in one message with BEGIN (or with the statements).
 */
function tenantScope(tenantId: string): string {
  if (!isUuid(tenantId)) throw new Error(`not a tenant id: ${JSON.stringify(tenantId)}`);
  return `SELECT set_config('role', '${APP_ROLE}', true), set_config('app.tenant_id', '${tenantId}', true)`;
}

/** `sql` with $1… replaced by `params` as SQL literals. */
function inline(sql: string, params: Statement['params'] & {}): string {
  return sql.replace(/\$(\d+)/g, (_, n: string) => {
    const i = Number(n) - 1;
    if (i >= params.length) throw new Error(`no value for $${n}`);
    const v = params[i];
    if (v === null) return 'NULL';
    if (typeof v === 'boolean') return v ? 'TRUE' : 'FALSE';
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new Error(`not a finite number for $${n}: ${v}`);
      return String(v);
    }
    return pg.escapeLiteral(v);
  });
}
