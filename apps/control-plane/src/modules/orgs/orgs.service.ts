import { Inject, Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import { AuditService } from '../../platform/audit/audit.service.js';
import { newSecret } from '../../platform/auth/secrets.js';
import { InvalidInputError } from '../../platform/errors/domain-error.js';
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
      await m.insert(User, { id: adminUserId, tenantId: organizationId, email: adminEmail.toLowerCase() });
      await m.insert(ApiToken, {
        id: uuidv7(),
        tenantId: organizationId,
        userId: adminUserId,
        tokenHash: hash,
        name: 'initial admin token',
        expiresAt: null,
        lastUsedAt: null,
        revokedAt: null,
      });
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
}
