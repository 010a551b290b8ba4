/**
 * The model registry: models, their versions and stages. Versions are registered automatically when a
 * TRAIN job succeeds, or explicitly for ONNX files a command job produced. Only metadata is held here.
 */
import { Inject, Injectable } from '@nestjs/common';
import { validate as isUuid, v7 as uuidv7 } from 'uuid';
import type { EntityManager } from 'typeorm';
import { fileUriProblem, type ModelArtifact, type TrainResult } from '@hearth/contracts';
import { allowsOn } from '../../platform/access/ability.js';
import { PermissionDeniedError } from '../../platform/access/access.errors.js';
import { scopeOf } from '../../platform/access/grants.js';
import type { Permission } from '../../platform/access/permissions.js';
import { actorOf, AuditService, type AuditActor } from '../../platform/audit/audit.service.js';
import type { Principal } from '../../platform/auth/principal.js';
import { InvalidInputError } from '../../platform/errors/domain-error.js';
import { changedRows } from '../../platform/database/returning.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import type { JobEntity } from '../jobs/job.entity.js';
import { ProjectsService } from '../projects/projects.service.js';
import {
  ModelStage,
  ModelVersionSource,
  type ModelModel,
  type ModelVersionModel,
  type RegisterModelVersionInput,
} from './model.model.js';
import {
  ModelInAnotherProjectError,
  ModelNotFoundError,
  ModelVersionNotFoundError,
  NoOnnxArtifactError,
} from './models.errors.js';

export interface ModelRow {
  id: string;
  name: string;
  project_id: string | null;
  description: string;
  created_at: Date;
}

export interface VersionRow {
  id: string;
  model_id: string;
  model_name: string;
  project_id: string | null;
  version: number;
  stage: ModelStage;
  source: ModelVersionSource;
  job_id: string | null;
  artifacts: (Omit<ModelArtifact, 'signature'> & { signature: ModelArtifact['signature'] | null })[];
  metrics: unknown;
  dataset_fingerprint: { sha256: string; rows: number } | null;
  backend: string | null;
  feature_names: string[] | null;
  labels: string[] | null;
  lineage: unknown;
  description: string;
  created_at: Date;
  stage_changed_at: Date | null;
}

/** Versions a training run registers are recorded as the registry's doing, on the job's behalf. */
const REGISTRY: AuditActor = { type: 'system', id: 'model registry' };

const VERSION_SELECT = `SELECT v.*, m.name AS model_name, m.project_id FROM model_versions v JOIN models m ON m.id = v.model_id`;

export const toModel = (r: ModelRow): ModelModel => ({
  id: r.id,
  name: r.name,
  projectId: r.project_id,
  description: r.description,
  createdAt: r.created_at,
});

export const toVersion = (r: VersionRow): ModelVersionModel => ({
  id: r.id,
  modelId: r.model_id,
  modelName: r.model_name,
  version: r.version,
  stage: r.stage,
  source: r.source,
  jobId: r.job_id,
  artifacts: r.artifacts.map((a) => ({
    uri: a.uri,
    sha256: a.sha256,
    sizeBytes: a.sizeBytes,
    format: a.format,
    inputs: a.signature?.inputs ?? null,
    outputs: a.signature?.outputs ?? null,
  })),
  metrics: r.metrics == null ? null : JSON.stringify(r.metrics),
  datasetFingerprint: r.dataset_fingerprint,
  backend: r.backend,
  featureNames: r.feature_names,
  labels: r.labels,
  lineage: JSON.stringify(r.lineage ?? {}),
  description: r.description,
  createdAt: r.created_at,
  stageChangedAt: r.stage_changed_at,
});

@Injectable()
export class ModelsService {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(ProjectsService) private readonly projects: ProjectsService,
  ) {}

  /** The models the caller can read: all with organization-wide models:read, else their projects'. */
  async list(p: Principal, projectId: string | null): Promise<ModelModel[]> {
    const scope = scopeOf(p.grants, 'models:read');
    return this.tx.tenant(p.tenantId, async (m) => {
      if (typeof projectId === 'string') await this.projects.require(m, projectId); // "" too: NOT_FOUND
      const rows: ModelRow[] = await m.query(
        `SELECT * FROM models WHERE ($1::uuid IS NULL OR project_id = $1) AND ($2::uuid[] IS NULL OR project_id = ANY($2))
          ORDER BY name LIMIT 1000`,
        [projectId ?? null, scope === 'organization' ? null : scope],
      );
      return rows.map(toModel);
    });
  }

  async get(p: Principal, id: string): Promise<ModelModel> {
    return this.tx.tenant(p.tenantId, async (m) => toModel(await this.requireModel(m, p, id, 'models:read')));
  }

  /** Versions of the given models, newest first, in one query (the Model.versions field). */
  async versionsOf(p: Principal, modelIds: readonly string[]): Promise<Map<string, ModelVersionModel[]>> {
    const rows: VersionRow[] = await this.tx.tenant(p.tenantId, (m) =>
      m.query(`${VERSION_SELECT} WHERE v.model_id = ANY($1) ORDER BY v.version DESC`, [modelIds]),
    );
    const byModel = new Map<string, ModelVersionModel[]>(modelIds.map((id) => [id, []]));
    for (const r of rows) byModel.get(r.model_id)?.push(toVersion(r));
    return byModel;
  }

  async getVersion(p: Principal, id: string): Promise<ModelVersionModel> {
    return this.tx.tenant(p.tenantId, async (m) =>
      toVersion(await this.requireVersion(m, p, id, 'models:read')),
    );
  }

  /**
   * A version the caller may act on with `permission`. Invisible (another tenant's, or in a project the
   * caller cannot read) is NOT_FOUND; visible but not permitted is FORBIDDEN.
   */
  async requireVersion(
    m: EntityManager,
    p: Principal,
    id: string,
    permission: Permission,
  ): Promise<VersionRow> {
    if (!isUuid(id)) throw new ModelVersionNotFoundError(id);
    const [row]: VersionRow[] = await m.query(`${VERSION_SELECT} WHERE v.id = $1 FOR UPDATE OF v`, [id]);
    if (!row || !allowsOn(p.ability, 'models:read', row.project_id)) throw new ModelVersionNotFoundError(id);
    if (!allowsOn(p.ability, permission, row.project_id)) throw new PermissionDeniedError(permission);
    return row;
  }

  async requireModel(m: EntityManager, p: Principal, id: string, permission: Permission): Promise<ModelRow> {
    if (!isUuid(id)) throw new ModelNotFoundError(id);
    const [row]: ModelRow[] = await m.query(`SELECT * FROM models WHERE id = $1`, [id]);
    if (!row || !allowsOn(p.ability, 'models:read', row.project_id)) throw new ModelNotFoundError(id);
    if (!allowsOn(p.ability, permission, row.project_id)) throw new PermissionDeniedError(permission);
    return row;
  }

  /** The ONNX file of a version: what serving and batch prediction load. */
  static onnxOf(v: VersionRow): VersionRow['artifacts'][number] {
    const onnx = v.artifacts.find((a) => a.format === 'onnx');
    if (!onnx) throw new NoOnnxArtifactError(v.id);
    return onnx;
  }

  /** Registers an ONNX file a command job (or anything else) produced, as a new version. */
  async registerVersion(p: Principal, input: RegisterModelVersionInput): Promise<ModelVersionModel> {
    const uriProblem = fileUriProblem(input.uri);
    if (uriProblem) throw new InvalidInputError(`uri ${uriProblem}`);
    return this.tx.tenant(p.tenantId, async (m) => {
      const projectId = input.projectId ?? p.tokenProjectId;
      if (projectId) await this.projects.require(m, projectId);
      const model = await this.modelForRegistration(
        m,
        p.tenantId,
        input.modelName,
        projectId,
        p.userId,
        actorOf(p),
      );
      if (!allowsOn(p.ability, 'models:register', model.project_id))
        throw new PermissionDeniedError('models:register');
      let lineage: Record<string, unknown> = { registeredBy: p.userId };
      if (input.jobId) {
        const [job]: { kind: string; state: string; command: string[] | null; project_id: string | null }[] =
          isUuid(input.jobId)
            ? await m.query(`SELECT kind, state, command, project_id FROM jobs WHERE id = $1`, [input.jobId])
            : [];
        if (!job || !allowsOn(p.ability, 'jobs:read', job.project_id))
          throw new InvalidInputError(`job ${input.jobId} not found`);
        if (job.state !== 'SUCCEEDED') throw new InvalidInputError(`job ${input.jobId} has not succeeded`);
        lineage = { ...lineage, jobId: input.jobId, kind: job.kind, command: job.command };
      }
      const signature =
        input.inputs && input.outputs ? { inputs: input.inputs, outputs: input.outputs } : null;
      if (!!input.inputs !== !!input.outputs)
        throw new InvalidInputError('give both inputs and outputs, or neither');
      const artifacts = [
        { uri: input.uri, sha256: input.sha256, sizeBytes: input.sizeBytes, format: 'onnx', signature },
      ];
      const row = await this.insertVersion(m, model, {
        source: ModelVersionSource.REGISTERED,
        jobId: input.jobId ?? null,
        artifacts,
        lineage,
        description: input.description ?? '',
        createdBy: p.userId,
      });
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'model_version.register',
        target: { type: 'model_version', id: row.id },
        changes: {
          model: model.name,
          version: row.version,
          uri: input.uri,
          sha256: input.sha256,
          jobId: input.jobId ?? null,
        },
      });
      return toVersion(row);
    });
  }

  /** Registers the model a successful TRAIN job produced, in the transaction that finishes the job. */
  async registerTrained(m: EntityManager, job: JobEntity, result: TrainResult): Promise<string> {
    const name = job.spec?.modelName ?? `job-${job.id}`;
    const [existing]: ModelRow[] = await m.query(`SELECT * FROM models WHERE name = $1`, [name]);
    if (existing && existing.project_id !== job.projectId)
      return `model not registered: ${name} belongs to another project`;
    const model =
      existing ??
      (await this.modelForRegistration(m, job.tenantId, name, job.projectId, job.createdBy, REGISTRY));
    const row = await this.insertVersion(m, model, {
      source: ModelVersionSource.TRAIN,
      jobId: job.id,
      artifacts: result.artifacts,
      metrics: result.metrics,
      datasetFingerprint: result.datasetFingerprint,
      backend: result.backend,
      featureNames: result.featureNames,
      labels: result.labels ?? null,
      lineage: { jobId: job.id, trainer: job.spec?.train ?? null },
      description: '',
      createdBy: job.createdBy,
    });
    await this.audit.record(m, job.tenantId, REGISTRY, {
      action: 'model_version.register',
      target: { type: 'model_version', id: row.id },
      changes: { model: name, version: row.version, jobId: job.id, backend: result.backend },
    });
    return `registered ${name} v${row.version}`;
  }

  /**
   * Moves a version to a stage. Promoting to PRODUCTION may archive the model's current production
   * versions in the same transaction.
   */
  async transitionStage(
    p: Principal,
    versionId: string,
    stage: ModelStage,
    archiveExisting: boolean,
  ): Promise<ModelVersionModel> {
    return this.tx.tenant(p.tenantId, async (m) => {
      const v = await this.requireVersion(m, p, versionId, 'models:promote');
      if (v.stage === stage) return toVersion(v);
      let archived: string[] = [];
      if (stage === ModelStage.PRODUCTION && archiveExisting) {
        const rows = await changedRows<{ id: string }>(
          m,
          `UPDATE model_versions SET stage = 'ARCHIVED', stage_changed_at = now()
            WHERE model_id = $1 AND stage = 'PRODUCTION' AND id <> $2 RETURNING id`,
          [v.model_id, v.id],
        );
        archived = rows.map((r) => r.id);
      }
      await m.query(`UPDATE model_versions SET stage = $2, stage_changed_at = now() WHERE id = $1`, [
        v.id,
        stage,
      ]);
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'model_version.stage',
        target: { type: 'model_version', id: v.id },
        changes: { model: v.model_name, version: v.version, from: v.stage, to: stage, archived },
      });
      const [row]: VersionRow[] = await m.query(`${VERSION_SELECT} WHERE v.id = $1`, [v.id]);
      return toVersion(row);
    });
  }

  /** The model to register a version under: the existing one (same project), or a new one. */
  private async modelForRegistration(
    m: EntityManager,
    tenantId: string,
    name: string,
    projectId: string | null,
    createdBy: string,
    actor: AuditActor,
  ): Promise<ModelRow> {
    const [existing]: ModelRow[] = await m.query(`SELECT * FROM models WHERE name = $1 FOR UPDATE`, [name]);
    if (existing) {
      if (existing.project_id !== projectId) throw new ModelInAnotherProjectError(name);
      return existing;
    }
    const [created]: ModelRow[] = await m.query(
      `INSERT INTO models (id, tenant_id, project_id, name, created_by) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tenant_id, name) DO NOTHING RETURNING *`,
      [uuidv7(), tenantId, projectId, name, createdBy],
    );
    if (created) {
      await this.audit.record(m, tenantId, actor, {
        action: 'model.create',
        target: { type: 'model', id: created.id },
        changes: { name, projectId },
      });
      return created;
    }
    // Created concurrently: take that one.
    return this.modelForRegistration(m, tenantId, name, projectId, createdBy, actor);
  }

  private async insertVersion(
    m: EntityManager,
    model: ModelRow,
    v: {
      source: ModelVersionSource;
      jobId: string | null;
      artifacts: unknown[];
      metrics?: unknown;
      datasetFingerprint?: unknown;
      backend?: string;
      featureNames?: string[];
      labels?: string[] | null;
      lineage: unknown;
      description: string;
      createdBy: string;
    },
  ): Promise<VersionRow> {
    await m.query(`SELECT id FROM models WHERE id = $1 FOR UPDATE`, [model.id]); // serializes version numbers
    const json = (x: unknown) => (x == null ? null : JSON.stringify(x));
    const [row]: VersionRow[] = await m.query(
      `INSERT INTO model_versions (id, tenant_id, model_id, version, source, job_id, artifacts, metrics, dataset_fingerprint,
                                   backend, feature_names, labels, lineage, description, created_by)
       SELECT $1, hearth_current_tenant(), $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
         FROM model_versions WHERE model_id = $2
       RETURNING *, $14::text AS model_name, $15::uuid AS project_id`,
      [
        uuidv7(),
        model.id,
        v.source,
        v.jobId,
        JSON.stringify(v.artifacts),
        json(v.metrics),
        json(v.datasetFingerprint),
        v.backend ?? null,
        json(v.featureNames),
        json(v.labels),
        JSON.stringify(v.lineage),
        v.description,
        v.createdBy,
        model.name,
        model.project_id,
      ],
    );
    return row;
  }
}
