import { Inject, Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import { actorOf, AuditService } from '../../platform/audit/audit.service.js';
import type { Principal } from '../../platform/auth/principal.js';
import { Sessions } from '../../platform/auth/sessions.js';
import { changedRows } from '../../platform/database/returning.js';
import { onUniqueViolation } from '../../platform/database/unique-violation.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { PrincipalStatus, type CreateServiceAccountInput, type ServiceAccountModel } from './access.model.js';
import { ConflictError, PrincipalNotFoundError } from './orgs.errors.js';
import { PrincipalsService, type PrincipalRow } from './principals.service.js';
import { assertMayTouch, bindingModelsOf, bindingsOf, type BindingRecord } from './role-bindings.js';

const COLUMNS = 'id, kind, email, name, description, status, created_at';

function toServiceAccount(row: PrincipalRow, bindings: readonly BindingRecord[]): ServiceAccountModel {
  return {
    id: row.id,
    name: row.name!,
    description: row.description,
    status: row.status as PrincipalStatus,
    createdAt: row.created_at,
    roleBindings: bindingModelsOf(bindings, row.id),
  };
}

/** Non-human principals for CI and automation. They get roles with changeMemberRole and tokens with createApiToken. */
@Injectable()
export class ServiceAccountsService {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(PrincipalsService) private readonly principals: PrincipalsService,
    @Inject(Sessions) private readonly sessions: Sessions,
  ) {}

  async create(p: Principal, input: CreateServiceAccountInput): Promise<ServiceAccountModel> {
    const { name } = input; // trimmed by the input type
    return this.tx.tenant(p.tenantId, async (m) => {
      const id = uuidv7();
      const [row]: PrincipalRow[] = await m
        .query(
          `INSERT INTO users (id, tenant_id, kind, name, description, status, invited_by)
           VALUES ($1, $2, 'service_account', $3, $4, 'ACTIVE', $5) RETURNING ${COLUMNS}`,
          [id, p.tenantId, name, input.description ?? '', p.userId],
        )
        .catch(onUniqueViolation(() => new ConflictError(`a service account named ${name} exists`)));
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'service_account.create',
        target: { type: 'service_account', id },
        changes: { name, description: input.description ?? '' },
      });
      return toServiceAccount(row, []);
    });
  }

  async list(p: Principal): Promise<ServiceAccountModel[]> {
    return this.tx.tenant(p.tenantId, async (m) => {
      const rows: PrincipalRow[] = await m.query(
        `SELECT ${COLUMNS} FROM users WHERE kind = 'service_account' AND status <> 'REMOVED' ORDER BY name LIMIT 5000`,
      );
      const bindings = await bindingsOf(
        m,
        rows.map((r) => r.id),
      );
      return rows.map((r) => toServiceAccount(r, bindings));
    });
  }

  /** Deletes a service account: its bindings go and its tokens stop working on their next use. */
  async delete(p: Principal, id: string): Promise<ServiceAccountModel> {
    const account = await this.tx.tenant(p.tenantId, async (m) => {
      const target = await this.principals.require(m, id);
      if (target.kind !== 'service_account') throw new PrincipalNotFoundError(id);
      const bindings = await bindingsOf(m, [target.id]);
      assertMayTouch(p, bindings);
      await m.query(`DELETE FROM role_bindings WHERE user_id = $1`, [target.id]);
      const [row] = await changedRows<PrincipalRow>(
        m,
        `UPDATE users SET status = 'REMOVED', removed_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
        [target.id],
      );
      const revoked = await changedRows<unknown>(
        m,
        `UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL RETURNING id`,
        [target.id],
      );
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'service_account.delete',
        target: { type: 'service_account', id: target.id },
        changes: { name: target.name, roles: bindings.map((b) => b.role), revokedCount: revoked.length },
      });
      return toServiceAccount(row, []);
    });
    this.sessions.revoke({ tenantId: p.tenantId, principalIds: [account.id] });
    return account;
  }
}
