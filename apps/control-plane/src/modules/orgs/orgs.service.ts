import { Inject, Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import type { EntityManager } from 'typeorm';
import { AuditService } from '../../platform/audit/audit.service.js';
import { newSecret } from '../../platform/auth/secrets.js';
import { isRoleName, ROLE_NAMES, type RoleName } from '../../platform/access/permissions.js';
import { InvalidInputError, NotFoundError } from '../../platform/errors/domain-error.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { ApiToken } from './api-token.entity.js';
import { Organization } from './organization.entity.js';
import { User } from './user.entity.js';

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export interface CreatedOrganization {
  organizationId: string;
  adminUserId: string;
  /** Shown once; only its hash is stored. */
  adminToken: string;
}

@Injectable()
export class OrgsService {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
  ) {}

  /** Creates an organization, its first admin and the admin's API token, atomically. */
  async create(name: string, adminEmail: string): Promise<CreatedOrganization> {
    const trimmed = name.trim();
    if (trimmed.length < 1 || trimmed.length > 200)
      throw new InvalidInputError('name must be 1 to 200 characters');
    if (!EMAIL.test(adminEmail) || adminEmail.length > 320)
      throw new InvalidInputError(`not an email address: ${adminEmail}`);
    const organizationId = uuidv7();
    const adminUserId = uuidv7();
    const { secret, hash } = newSecret('hrt');
    // The new organization is its own tenant: RLS checks the rows below against it.
    await this.tx.tenant(organizationId, async (m) => {
      await m.insert(Organization, { id: organizationId, name: trimmed });
      await this.insertMember(m, organizationId, adminUserId, adminEmail, 'owner', hash);
      await this.audit.record(
        m,
        organizationId,
        { type: 'system', id: 'hearth org create' },
        {
          action: 'organization.create',
          target: { type: 'organization', id: organizationId },
          changes: { name: trimmed, adminEmail: adminEmail.toLowerCase(), adminUserId },
        },
      );
    });
    return { organizationId, adminUserId, adminToken: secret };
  }

  /**
   * Adds a user with a built-in role and an API token (shown once). An operator's tool (CLI) until
   * member invitations arrive; audited as the system.
   */
  async addUser(
    organizationId: string,
    email: string,
    role: string,
  ): Promise<{ userId: string; token: string }> {
    if (!isRoleName(role))
      throw new InvalidInputError(`unknown role ${role}; one of: ${ROLE_NAMES.join(', ')}`);
    if (!EMAIL.test(email) || email.length > 320)
      throw new InvalidInputError(`not an email address: ${email}`);
    const userId = uuidv7();
    const { secret, hash } = newSecret('hrt');
    await this.tx.tenant(organizationId, async (m) => {
      if (!(await m.findOneBy(Organization, { id: organizationId })))
        throw new NotFoundError('organization', organizationId);
      await this.insertMember(m, organizationId, userId, email, role, hash);
      await this.audit.record(
        m,
        organizationId,
        { type: 'system', id: 'hearth org add-user' },
        {
          action: 'member.add',
          target: { type: 'user', id: userId },
          changes: { email: email.toLowerCase(), role },
        },
      );
    });
    return { userId, token: secret };
  }

  /** A user, their first API token (hash only) and their role binding, in the caller's transaction. */
  private async insertMember(
    m: EntityManager,
    tenantId: string,
    userId: string,
    email: string,
    role: RoleName,
    tokenHash: Buffer,
  ) {
    await m.insert(User, { id: userId, tenantId, email: email.toLowerCase() });
    await m.insert(ApiToken, {
      id: uuidv7(),
      tenantId,
      userId,
      tokenHash,
      name: 'initial token',
      expiresAt: null,
      lastUsedAt: null,
      revokedAt: null,
    });
    await m.query(`INSERT INTO role_bindings (id, tenant_id, user_id, role) VALUES ($1, $2, $3, $4)`, [
      uuidv7(),
      tenantId,
      userId,
      role,
    ]);
  }
}
