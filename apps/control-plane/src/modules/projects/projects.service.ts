import { Inject, Injectable } from '@nestjs/common';
import { validate as isUuid, v7 as uuidv7 } from 'uuid';
import type { EntityManager } from 'typeorm';
import { scopeOf } from '../../platform/access/grants.js';
import { actorOf, AuditService } from '../../platform/audit/audit.service.js';
import type { Principal } from '../../platform/auth/principal.js';
import { onUniqueViolation } from '../../platform/database/unique-violation.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import type { CreateProjectInput, ProjectModel } from './project.model.js';
import { ProjectNameTakenError, ProjectNotFoundError } from './projects.errors.js';

interface ProjectRow {
  id: string;
  name: string;
  description: string;
  created_at: Date;
}

const toModel = (r: ProjectRow): ProjectModel => ({
  id: r.id,
  name: r.name,
  description: r.description,
  createdAt: r.created_at,
});

@Injectable()
export class ProjectsService {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
  ) {}

  async create(p: Principal, input: CreateProjectInput): Promise<ProjectModel> {
    const { name } = input; // trimmed by the input type
    return this.tx.tenant(p.tenantId, async (m) => {
      const id = uuidv7();
      const rows: ProjectRow[] = await m
        .query(
          `INSERT INTO projects (id, tenant_id, name, description, created_by) VALUES ($1, $2, $3, $4, $5)
           RETURNING id, name, description, created_at`,
          [id, p.tenantId, name, input.description ?? '', p.userId],
        )
        .catch(onUniqueViolation(() => new ProjectNameTakenError(name)));
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'project.create',
        target: { type: 'project', id },
        changes: { name, description: input.description ?? '' },
      });
      return toModel(rows[0]);
    });
  }

  /** The projects the caller can see: all of them with organization-wide projects:read, else their own. */
  async list(p: Principal): Promise<ProjectModel[]> {
    const scope = scopeOf(p.grants, 'projects:read');
    if (scope !== 'organization' && scope.length === 0) return [];
    return this.tx.tenant(p.tenantId, async (m) => {
      const rows: ProjectRow[] =
        scope === 'organization'
          ? await m.query(`SELECT id, name, description, created_at FROM projects ORDER BY name LIMIT 1000`)
          : await m.query(
              `SELECT id, name, description, created_at FROM projects WHERE id = ANY($1) ORDER BY name`,
              [scope],
            );
      return rows.map(toModel);
    });
  }

  /** One project the caller can see; another organization's, or one they cannot see, is NOT_FOUND. */
  async get(p: Principal, id: string): Promise<ProjectModel> {
    const scope = scopeOf(p.grants, 'projects:read');
    if (!isUuid(id) || (scope !== 'organization' && !scope.includes(id))) throw new ProjectNotFoundError(id);
    return this.tx.tenant(p.tenantId, async (m) => toModel(await this.require(m, id)));
  }

  /** In the caller's transaction: the project, or NOT_FOUND (row-level security hides other tenants'). */
  async require(m: EntityManager, id: string): Promise<ProjectRow> {
    if (!isUuid(id)) throw new ProjectNotFoundError(id);
    const [row]: ProjectRow[] = await m.query(
      `SELECT id, name, description, created_at FROM projects WHERE id = $1`,
      [id],
    );
    if (!row) throw new ProjectNotFoundError(id);
    return row;
  }
}
