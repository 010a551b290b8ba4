/**
 * Deployments: a model version served by a SERVE job on an agent. Redeploying a served model starts
 * a SERVE job for the new version on the same agent, which swaps the model without failing requests
 * in flight and then ends the old job. The deployment's state is its current job's, read, not copied.
 */
import { Inject, Injectable } from '@nestjs/common';
import { validate as isUuid, v7 as uuidv7 } from 'uuid';
import type { EntityManager } from 'typeorm';
import { ServeSpec } from '@hearth/contracts';
import { allowsOn } from '../../platform/access/ability.js';
import { PermissionDeniedError } from '../../platform/access/access.errors.js';
import { scopeOf } from '../../platform/access/grants.js';
import { actorOf, AuditService } from '../../platform/audit/audit.service.js';
import type { Principal } from '../../platform/auth/principal.js';
import { NotFoundError } from '../../platform/errors/domain-error.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { JobEntity, TERMINAL_STATES } from '../jobs/job.entity.js';
import { JobsService } from '../jobs/jobs.service.js';
import { ModelsService, toVersion, type VersionRow } from '../models/models.service.js';
import { DeploymentState, type DeployModelInput, type DeploymentModel } from './deployment.model.js';

/** A deployment's serving job is re-dispatched this many times when agents are lost. */
const SERVE_MAX_ATTEMPTS = 20;

interface DeploymentRow {
  id: string;
  model_id: string;
  version_id: string;
  job_id: string;
  agent_selector: { agentIds?: string[]; labels?: Record<string, string> };
  created_at: Date;
  updated_at: Date;
  stopped_at: Date | null;
  project_id: string | null;
}

export class DeploymentNotFoundError extends NotFoundError {
  constructor(id: string) {
    super('deployment', id);
  }
}

@Injectable()
export class DeploymentsService {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(JobsService) private readonly jobs: JobsService,
    @Inject(ModelsService) private readonly models: ModelsService,
  ) {}

  /** Serves a model version; for a model already served, replaces the version in place. */
  async deploy(p: Principal, input: DeployModelInput): Promise<DeploymentModel> {
    const { id, job } = await this.tx.tenant(p.tenantId, async (m) => {
      const version = await this.models.requireVersion(m, p, input.versionId, 'models:deploy');
      const onnx = ModelsService.onnxOf(version);
      const [live]: DeploymentRow[] = await m.query(
        `SELECT d.*, NULL::uuid AS project_id FROM deployments d WHERE d.model_id = $1 AND d.stopped_at IS NULL FOR UPDATE`,
        [version.model_id],
      );
      const deploymentId = live?.id ?? uuidv7();
      const serve = ServeSpec.parse({
        deploymentId,
        model: {
          name: version.model_name,
          version: String(version.version),
          uri: onnx.uri,
          sha256: onnx.sha256,
        },
      });
      let selector = {
        ...(input.agentSelector?.agentIds ? { agentIds: input.agentSelector.agentIds } : {}),
        labels: Object.fromEntries((input.agentSelector?.labels ?? []).map((l) => [l.key, l.value])),
      };
      let previous: JobEntity | null = null;
      if (live) {
        previous = await m.findOne(JobEntity, {
          where: { id: live.job_id },
          lock: { mode: 'pessimistic_write' },
        });
        // The new version goes where the old one serves, so the agent swaps it in place.
        if (previous?.agentId && !TERMINAL_STATES.includes(previous.state))
          selector = { agentIds: [previous.agentId], labels: {} };
        else if (!input.agentSelector) selector = live.agent_selector as typeof selector;
      }
      const job = await this.jobs.create(m, p, {
        kind: 'SERVE',
        command: null,
        spec: { serve },
        projectId: version.project_id,
        env: {},
        timeoutSeconds: null,
        maxAttempts: SERVE_MAX_ATTEMPTS,
        agentSelector: selector,
      });
      if (live) {
        // A previous job that never reached an agent is simply cancelled; one that did is ended by
        // its agent once the new version is in place.
        if (previous?.state === 'QUEUED')
          await this.jobs.requestCancel(m, previous, actorOf(p), `replaced by version ${version.version}`);
        await m.query(
          `UPDATE deployments SET version_id = $2, job_id = $3, agent_selector = $4, updated_at = now() WHERE id = $1`,
          [live.id, version.id, job.id, JSON.stringify(selector)],
        );
      } else {
        await m.query(
          `INSERT INTO deployments (id, tenant_id, model_id, version_id, job_id, agent_selector, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7)`,
          [
            deploymentId,
            p.tenantId,
            version.model_id,
            version.id,
            job.id,
            JSON.stringify(selector),
            p.userId,
          ],
        );
      }
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: live ? 'deployment.update' : 'deployment.create',
        target: { type: 'deployment', id: deploymentId },
        changes: {
          model: version.model_name,
          version: version.version,
          jobId: job.id,
          agentSelector: selector,
        },
      });
      return { id: deploymentId, job };
    });
    this.jobs.announce(job);
    return this.get(p, id);
  }

  /** Stops serving: the SERVE job is cancelled and the agent unloads the model. */
  async undeploy(p: Principal, id: string): Promise<DeploymentModel> {
    const stopped = await this.tx.tenant(p.tenantId, async (m) => {
      const d = await this.require(m, p, id, 'models:deploy');
      if (d.stopped_at) return null;
      const job = await m.findOne(JobEntity, {
        where: { id: d.job_id },
        lock: { mode: 'pessimistic_write' },
      });
      const cancel = job ? await this.jobs.requestCancel(m, job, actorOf(p), 'deployment stopped') : null;
      await m.query(`UPDATE deployments SET stopped_at = now(), updated_at = now() WHERE id = $1`, [id]);
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'deployment.stop',
        target: { type: 'deployment', id },
        changes: { jobId: d.job_id },
      });
      return cancel;
    });
    if (stopped) this.jobs.announceCancel(stopped.job);
    return this.get(p, id);
  }

  async get(p: Principal, id: string): Promise<DeploymentModel> {
    return this.tx.tenant(p.tenantId, async (m) => {
      await this.require(m, p, id, 'models:read');
      const [model] = await this.read(m, `d.id = $1`, [id]);
      return model;
    });
  }

  async list(p: Principal, includeStopped: boolean): Promise<DeploymentModel[]> {
    const scope = scopeOf(p.grants, 'models:read');
    return this.tx.tenant(p.tenantId, (m) =>
      this.read(m, `($1 OR d.stopped_at IS NULL) AND ($2::uuid[] IS NULL OR mo.project_id = ANY($2))`, [
        includeStopped,
        scope === 'organization' ? null : scope,
      ]),
    );
  }

  private async require(
    m: EntityManager,
    p: Principal,
    id: string,
    permission: 'models:read' | 'models:deploy',
  ): Promise<DeploymentRow> {
    if (!isUuid(id)) throw new DeploymentNotFoundError(id);
    const [row]: DeploymentRow[] = await m.query(
      `SELECT d.*, mo.project_id FROM deployments d JOIN models mo ON mo.id = d.model_id WHERE d.id = $1 FOR UPDATE OF d`,
      [id],
    );
    if (!row || !allowsOn(p.ability, 'models:read', row.project_id)) throw new DeploymentNotFoundError(id);
    if (!allowsOn(p.ability, permission, row.project_id)) throw new PermissionDeniedError(permission);
    return row;
  }

  private async read(m: EntityManager, where: string, params: unknown[]): Promise<DeploymentModel[]> {
    const rows: (DeploymentRow & {
      job_state: string;
      job_reason: string | null;
      job_agent: string | null;
      progress: JobEntity['progress'];
      version: VersionRow;
    })[] = await m.query(
      `SELECT d.*, mo.project_id, j.state AS job_state, j.state_reason AS job_reason, j.agent_id AS job_agent, j.progress,
              to_jsonb(v) || jsonb_build_object('model_name', mo.name, 'project_id', mo.project_id) AS version
         FROM deployments d
         JOIN models mo ON mo.id = d.model_id
         JOIN model_versions v ON v.id = d.version_id
         JOIN jobs j ON j.id = d.job_id
        WHERE ${where}
        ORDER BY d.id DESC LIMIT 1000`,
      params,
    );
    return rows.map((r) => {
      const state = stateOf(r.stopped_at, r.job_state, r.progress);
      const metrics = r.progress.serveMetrics;
      return {
        id: r.id,
        modelId: r.model_id,
        modelName: r.version.model_name,
        version: toVersion({
          ...r.version,
          created_at: new Date(r.version.created_at),
          stage_changed_at: r.version.stage_changed_at ? new Date(r.version.stage_changed_at) : null,
        }),
        state,
        // FAILED: why; PENDING: what it waits for (an agent, or one that gave it back to come back).
        stateReason:
          state === DeploymentState.FAILED || state === DeploymentState.PENDING ? r.job_reason : null,
        endpoint: state === DeploymentState.READY ? (r.progress.endpoint ?? null) : null,
        executionProvider: state === DeploymentState.READY ? (r.progress.executionProvider ?? null) : null,
        jobId: r.job_id,
        agentId: r.job_agent,
        metrics: metrics
          ? { ...metrics, clientErrors: metrics.clientErrors ?? null, at: new Date(metrics.at) }
          : null,
        createdAt: r.created_at,
        updatedAt: r.updated_at,
        stoppedAt: r.stopped_at,
      };
    });
  }
}

/** A deployment's state, from its job's. */
export function stateOf(
  stoppedAt: Date | null,
  jobState: string,
  progress: JobEntity['progress'],
): DeploymentState {
  if (stoppedAt) return DeploymentState.STOPPED;
  switch (jobState) {
    case 'RUNNING':
      return progress.endpoint ? DeploymentState.READY : DeploymentState.PENDING;
    case 'FAILED':
    case 'TIMED_OUT':
      return DeploymentState.FAILED;
    case 'CANCELLED':
    case 'SUCCEEDED':
      return DeploymentState.STOPPED;
    default:
      return DeploymentState.PENDING;
  }
}
