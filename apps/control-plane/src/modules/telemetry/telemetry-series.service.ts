/**
 * The fleet now, and time series per agent (host and each GPU), per job and per project. Everything
 * runs in the caller's tenant transaction (row-level security), and an object of another tenant is
 * NOT_FOUND. Fleet-wide views (the summary, an agent's series) are fleet information and also need
 * agents:read; a job's or a project's telemetry needs telemetry:read where the object lives.
 */
import { Inject, Injectable } from '@nestjs/common';
import { validate as isUuid } from 'uuid';
import type { EntityManager } from 'typeorm';
import { CONFIG, type Config } from '../../config/config.js';
import { allows, allowsOn } from '../../platform/access/ability.js';
import { PermissionDeniedError } from '../../platform/access/access.errors.js';
import type { Principal } from '../../platform/auth/principal.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { AgentNotFoundError } from '../fleet/fleet.errors.js';
import { JobNotFoundError } from '../jobs/jobs.errors.js';
import { ProjectNotFoundError } from '../projects/projects.errors.js';
import {
  gpuPointColumns,
  gpuSource,
  hostPointColumns,
  hostSource,
  toGpuPoint,
  toHostPoint,
  type GpuPointRow,
  type HostPointRow,
} from './series-sql.js';
import { checkPoints, MAX_POINTS, resolveRange, type ResolvedRange } from './telemetry-range.js';
import {
  TelemetryResolution,
  type AgentTelemetrySeries,
  type FleetUtilization,
  type GpuSeries,
  type TelemetryGpuModel,
  type TelemetryRangeInput,
  type UsageSeries,
} from './telemetry.model.js';

/** A GPU's latest sample counts for the fleet view when it is at most this old. */
const FLEET_WINDOW_SECONDS = 120;
const DEFAULT_IDLE_THRESHOLD = 5;

type GpuRow = GpuPointRow & { agent_id: string; gpu: number };

@Injectable()
export class TelemetrySeriesService {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(Transactions) private readonly tx: Transactions,
  ) {}

  async fleet(p: Principal, now = new Date()): Promise<FleetUtilization> {
    if (!allows(p.ability, 'agents:read')) throw new PermissionDeniedError('agents:read');
    return this.tx.tenant(p.tenantId, async (m) => {
      const latest: {
        agent_id: string;
        job_id: string | null;
        util_pct: number | null;
        power_w: number | null;
        model: string | null;
      }[] = await m.query(
        `SELECT r.agent_id, x.gpu, x.job_id, x.util_pct, x.power_w, g.name AS model
           FROM (SELECT DISTINCT ON (s.agent_id) s.*
                   FROM telemetry_samples s JOIN agents a ON a.id = s.agent_id AND a.revoked_at IS NULL
                  WHERE s.at >= $1::timestamptz - make_interval(secs => $2) AND s.at <= $1
                  ORDER BY s.agent_id, s.at DESC) r
          CROSS JOIN LATERAL unnest(r.gpu, r.gpu_job_id, r.gpu_util_pct, r.gpu_power_w) AS x(gpu, job_id, util_pct, power_w)
           LEFT JOIN telemetry_gpus g ON g.agent_id = r.agent_id AND g.gpu = x.gpu`,
        [now, FLEET_WINDOW_SECONDS],
      );
      const [{ total }]: { total: string }[] = await m.query(
        `SELECT coalesce(sum(jsonb_array_length(gpus)), 0) AS total FROM agents
          WHERE revoked_at IS NULL AND last_heartbeat_at > now() - make_interval(secs => $1)`,
        [this.config.fleet.leaseSeconds],
      );
      const threshold = await idleThreshold(m);
      const busy = (u: number | null) => u !== null && u >= threshold;
      const mean = (rows: typeof latest) => {
        const known = rows.filter((r) => r.util_pct !== null);
        return known.length ? known.reduce((a, r) => a + r.util_pct!, 0) / known.length : null;
      };
      const models = new Map<string, typeof latest>();
      for (const r of latest) {
        const key = r.model ?? 'unknown';
        models.set(key, [...(models.get(key) ?? []), r]);
      }
      return {
        at: now,
        gpusTotal: Number(total),
        gpusReporting: latest.length,
        gpusAllocated: latest.filter((r) => r.job_id !== null).length,
        gpusBusy: latest.filter((r) => busy(r.util_pct)).length,
        meanUtilizationPct: mean(latest),
        powerW: latest.reduce((a, r) => a + (r.power_w ?? 0), 0),
        agentsReporting: new Set(latest.map((r) => r.agent_id)).size,
        byModel: [...models].map(([model, rows]) => ({
          model,
          gpusReporting: rows.length,
          gpusAllocated: rows.filter((r) => r.job_id !== null).length,
          gpusBusy: rows.filter((r) => busy(r.util_pct)).length,
          meanUtilizationPct: mean(rows),
        })),
      };
    });
  }

  /** An agent's host series and one series per GPU (or only the GPU with this uuid). */
  async agent(
    p: Principal,
    agentId: string,
    input: TelemetryRangeInput,
    gpuUuid?: string | null,
  ): Promise<AgentTelemetrySeries> {
    if (!isUuid(agentId)) throw new AgentNotFoundError(agentId);
    const range = resolveRange(input);
    return this.tx.tenant(p.tenantId, async (m) => {
      const [agent]: unknown[] = await m.query(`SELECT 1 FROM agents WHERE id = $1`, [agentId]);
      if (!agent) throw new AgentNotFoundError(agentId);
      if (!allows(p.ability, 'agents:read')) throw new PermissionDeniedError('agents:read');
      const host: HostPointRow[] = await m.query(
        `SELECT ${hostPointColumns()} FROM ${hostSource(range.resolution)} x
          WHERE agent_id = $1 AND t >= $2 AND t < $3 GROUP BY t ORDER BY t LIMIT ${MAX_POINTS + 1}`,
        [agentId, range.from, range.to],
      );
      const gpus = await this.gpuSeries(m, range, 'agent_id = $1', [agentId], gpuUuid ?? null);
      checkPoints(host.length + gpus.reduce((a, g) => a + g.points.length, 0));
      return { agentId, ...range, host: host.map(toHostPoint), gpus };
    });
  }

  async job(p: Principal, jobId: string, input: TelemetryRangeInput): Promise<UsageSeries> {
    if (!isUuid(jobId)) throw new JobNotFoundError(jobId);
    const range = resolveRange(input);
    return this.tx.tenant(p.tenantId, async (m) => {
      const [job]: { project_id: string | null }[] = await m.query(
        `SELECT project_id FROM jobs WHERE id = $1`,
        [jobId],
      );
      if (!job || !allowsOn(p.ability, 'telemetry:read', job.project_id)) throw new JobNotFoundError(jobId);
      // Raw samples are found through the agents the job ran on (their key is agent and time).
      return this.usage(
        m,
        jobId,
        range,
        'job_id = $1',
        'SELECT agent_id FROM job_attempts WHERE job_id = $1 UNION SELECT agent_id FROM jobs WHERE id = $1',
      );
    });
  }

  async project(p: Principal, projectId: string, input: TelemetryRangeInput): Promise<UsageSeries> {
    if (!isUuid(projectId)) throw new ProjectNotFoundError(projectId);
    const range = resolveRange(input);
    return this.tx.tenant(p.tenantId, async (m) => {
      const [project]: unknown[] = await m.query(`SELECT 1 FROM projects WHERE id = $1`, [projectId]);
      if (!project || !allowsOn(p.ability, 'telemetry:read', projectId))
        throw new ProjectNotFoundError(projectId);
      return this.usage(
        m,
        projectId,
        range,
        'project_id = $1',
        `SELECT a.agent_id FROM job_attempts a JOIN jobs j ON j.id = a.job_id
          WHERE j.project_id = $1 AND a.created_at < $3 AND (a.finished_at IS NULL OR a.finished_at >= $2)`,
      );
    });
  }

  private async usage(
    m: EntityManager,
    id: string,
    range: ResolvedRange,
    where: string,
    agentsOf: string,
  ): Promise<UsageSeries> {
    const filter =
      range.resolution === TelemetryResolution.RAW ? `${where} AND agent_id IN (${agentsOf})` : where;
    const points: GpuPointRow[] = await m.query(
      `SELECT ${gpuPointColumns(range.resolution)} FROM ${gpuSource(range.resolution)} x
        WHERE ${filter} AND t >= $2 AND t < $3 GROUP BY t ORDER BY t LIMIT ${MAX_POINTS + 1}`,
      [id, range.from, range.to],
    );
    const gpus = await this.gpuSeries(m, range, filter, [id], null);
    checkPoints(points.length + gpus.reduce((a, g) => a + g.points.length, 0));
    return { id, ...range, points: points.map(toGpuPoint), gpus };
  }

  /** One series per (agent, GPU) among the rows the filter ($1) selects. */
  private async gpuSeries(
    m: EntityManager,
    range: ResolvedRange,
    filter: string,
    params: unknown[],
    gpuUuid: string | null,
  ): Promise<GpuSeries[]> {
    const rows: GpuRow[] = await m.query(
      `SELECT agent_id, gpu, ${gpuPointColumns(range.resolution)} FROM ${gpuSource(range.resolution)} x
        WHERE ${filter} AND t >= $2 AND t < $3
          AND ($4::text IS NULL OR (agent_id, gpu) IN (SELECT agent_id, gpu FROM telemetry_gpus WHERE uuid = $4))
        GROUP BY agent_id, gpu, t ORDER BY agent_id, gpu, t LIMIT ${MAX_POINTS + 1}`,
      [...params, range.from, range.to, gpuUuid],
    );
    checkPoints(rows.length);
    const described: (TelemetryGpuModel & { gpu: number })[] = (
      await m.query(
        `SELECT agent_id, gpu, vendor, gpu_index, uuid, name, memory_total_mib FROM telemetry_gpus
          WHERE (agent_id, gpu) IN (SELECT * FROM unnest($1::uuid[], $2::int2[]))`,
        [rows.map((r) => r.agent_id), rows.map((r) => r.gpu)],
      )
    ).map((d: Record<string, unknown>) => ({
      agentId: d.agent_id as string,
      gpu: d.gpu as number,
      vendor: d.vendor as string,
      index: d.gpu_index as number,
      uuid: d.uuid as string | null,
      name: d.name as string | null,
      memoryTotalMiB: d.memory_total_mib as number | null,
    }));
    const series = new Map<string, GpuSeries>();
    for (const r of rows) {
      const key = `${r.agent_id}:${r.gpu}`;
      let s = series.get(key);
      if (!s) {
        const d = described.find((x) => x.agentId === r.agent_id && x.gpu === r.gpu);
        const { gpu: _key, ...gpu } = d ?? {
          gpu: r.gpu,
          agentId: r.agent_id,
          vendor: r.gpu >= 1024 ? 'amd' : 'nvidia',
          index: r.gpu % 1024,
          uuid: null,
          name: null,
          memoryTotalMiB: null,
        };
        s = { gpu, points: [] };
        series.set(key, s);
      }
      s.points.push(toGpuPoint(r));
    }
    return [...series.values()];
  }
}

/** The organization's idle threshold (the tenant transaction's own settings row, else the default). */
export async function idleThreshold(m: EntityManager): Promise<number> {
  const [row]: { idle_threshold_pct: number }[] = await m.query(
    `SELECT idle_threshold_pct FROM telemetry_settings`,
  );
  return row ? Number(row.idle_threshold_pct) : DEFAULT_IDLE_THRESHOLD;
}
