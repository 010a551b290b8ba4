/**
 * Writes a batch of telemetry messages (from many agents, often many tenants) in one transaction:
 * a multi-row INSERT per table (unnest of column arrays), the GPUs' descriptions, and the minutes that
 * got samples after they were rolled up. Runs as hearth_system: one transaction per flush rather than
 * one per tenant is what makes 20,000 samples a second fit; the tenant of every row comes from the
 * NATS subject (which nats-server only lets the agent itself publish on) and must match the agents
 * table, checked here for the whole batch at once. Redelivered samples are no-ops (primary keys).
 */
import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { CONFIG, type Config } from '../../config/config.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { describeGpus, IngestRows, type GpuDescription, type IngestMessage } from './ingest-rows.js';

export interface WriteResult {
  /** Why a message was refused, by its position in the batch; absent: written. */
  refused: Map<number, string>;
  hostSamples: number;
  gpuSamples: number;
  outOfRange: number;
  unknownJobs: number;
  /** Samples the agents say they dropped before sending. */
  droppedByAgents: number;
  /** Newest sample time (ms) of each written message. */
  newest: number[];
  /** Where the time went: the agents and jobs lookup, building the rows, the insert transaction. */
  timings: { lookupMs: number; buildMs: number; insertMs: number };
}

/** How long a GPU's unchanged description is not written again. */
const DESCRIPTION_REFRESH_MS = 10 * 60_000;
/** Samples dated this far ahead of the control plane's clock are refused (agent clock skew). */
const MAX_FUTURE_MS = 10 * 60_000;
const DAY_MS = 86_400_000;

@Injectable()
export class TelemetryWriter {
  /** Each agent's GPU table as this replica last wrote it; a cache only (the upsert is idempotent). */
  private readonly described = new Map<string, { json: string; at: number }>();

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(Transactions) private readonly tx: Transactions,
  ) {}

  async write(batch: readonly IngestMessage[], now = Date.now()): Promise<WriteResult> {
    const refused = new Map<number, string>();
    const t0 = performance.now();
    const { agents, jobs } = await this.lookup(batch);
    const t1 = performance.now();
    batch.forEach((b, i) => {
      const agent = agents.get(b.agentId);
      if (!agent || agent.tenantId !== b.tenantId) refused.set(i, 'unknown agent');
      else if (agent.revoked) refused.set(i, 'revoked agent');
    });
    const accepted = batch.filter((_, i) => !refused.has(i));
    const rows = new IngestRows();
    const bounds = {
      // An hour inside raw retention, so the day partition cannot be dropped under the insert.
      minAt: now - this.config.telemetry.retentionDays.raw * DAY_MS + 3_600_000,
      maxAt: now + MAX_FUTURE_MS,
      jobAllowed: (tenantId: string, agentId: string, jobId: string) => {
        const job = jobs.get(jobId);
        return job !== undefined && job.tenantId === tenantId && job.agentId === agentId;
      },
    };
    let droppedByAgents = 0;
    for (const b of accepted) {
      rows.add(b, bounds);
      droppedByAgents += b.message.dropped;
    }
    const t2 = performance.now();
    if (rows.samples > 0) {
      const described = this.changedTables(rows.gpuTables, now);
      await this.tx.system((m) => this.insert(m, rows, described));
      for (const [key, json] of described) this.described.set(key, { json, at: now });
      if (this.described.size > 1_000_000) this.described.clear(); // a cache, never a leak
    }
    return {
      refused,
      hostSamples: rows.samples,
      gpuSamples: rows.gpuSamples,
      outOfRange: rows.outOfRange,
      unknownJobs: rows.unknownJobs,
      droppedByAgents,
      newest: rows.newest,
      timings: { lookupMs: t1 - t0, buildMs: t2 - t1, insertMs: performance.now() - t2 },
    };
  }

  private async insert(m: EntityManager, rows: IngestRows, described: Map<string, string>): Promise<void> {
    // Bounds the transaction, so that a minute not marked late below is committed well before the
    // rollup reads it (see rollups.service.ts).
    await m.query(`SET LOCAL statement_timeout = '20s'`);
    const c = rows.cols;
    await m.query(
      `INSERT INTO telemetry_samples (tenant_id, agent_id, at, interval_s, cpu_pct, mem_used_mib, mem_total_mib,
              disk_read_bps, disk_write_bps, net_rx_bps, net_tx_bps, job_ids, job_cpu_pct, dropped_before,
              skipped_lines, rejected_values, failed_tools, gpu, gpu_job_id, gpu_util_pct, gpu_mem_util_pct,
              gpu_mem_used_mib, gpu_power_w, gpu_temperature_c, gpu_sm_clock_mhz, gpu_foreign_procs)
       SELECT t, a, at, i, c, mu, mt, dr, dw, nr, nt, ji::uuid[], jc::real[], d, sl, rv, ft::text[], g::int2[],
              gj::uuid[], gu::real[], gmu::real[], gm::int4[], gp::real[], gt::real[], gc::int2[], gf::int4[]
         FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int2[], $5::real[], $6::int8[], $7::int8[],
                     $8::float8[], $9::float8[], $10::float8[], $11::float8[], $12::text[], $13::text[], $14::int4[],
                     $15::int4[], $16::int4[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[],
                     $22::text[], $23::text[], $24::text[], $25::text[], $26::text[])
           AS u(t, a, at, i, c, mu, mt, dr, dw, nr, nt, ji, jc, d, sl, rv, ft, g, gj, gu, gmu, gm, gp, gt, gc, gf)
       ON CONFLICT DO NOTHING`,
      [
        c.tenant,
        c.agent,
        c.at,
        c.interval,
        c.cpu,
        c.memUsed,
        c.memTotal,
        c.diskRead,
        c.diskWrite,
        c.netRx,
        c.netTx,
        c.jobIds,
        c.jobCpu,
        c.droppedBefore,
        c.skippedLines,
        c.rejectedValues,
        c.failedTools,
        c.gpu,
        c.gpuJob,
        c.gpuUtil,
        c.gpuMemUtil,
        c.gpuMemUsed,
        c.gpuPower,
        c.gpuTemperature,
        c.gpuClock,
        c.gpuForeign,
      ],
    );
    if (described.size > 0)
      await this.describe(
        m,
        [...described.keys()].flatMap((agentId) => {
          const table = rows.gpuTables.get(agentId)!;
          return describeGpus(table.tenantId, agentId, table.gpus);
        }),
      );
    // Last statement: minutes that may already be rolled up (they ended more than half the settle
    // time ago) are marked, and the rollup redoes them.
    await m.query(
      `INSERT INTO telemetry_late_minutes (agent_id, minute)
       SELECT DISTINCT a, date_trunc('minute', at) FROM unnest($1::uuid[], $2::timestamptz[]) AS u(a, at)
        WHERE date_trunc('minute', at) + interval '1 minute' < clock_timestamp() - make_interval(secs => $3)
       ON CONFLICT DO NOTHING`,
      [c.agent, c.at, this.config.telemetry.rollupSettleSeconds / 2],
    );
  }

  /** The agents whose GPU table this replica has not written lately, with the table's JSON. */
  private changedTables(tables: IngestRows['gpuTables'], now: number): Map<string, string> {
    const changed = new Map<string, string>();
    for (const [agentId, table] of tables) {
      const json = JSON.stringify(table.gpus);
      const seen = this.described.get(agentId);
      if (!seen || seen.json !== json || now - seen.at >= DESCRIPTION_REFRESH_MS) changed.set(agentId, json);
    }
    return changed;
  }

  private async describe(m: EntityManager, gpus: GpuDescription[]): Promise<void> {
    await m.query(
      `INSERT INTO telemetry_gpus (tenant_id, agent_id, gpu, vendor, gpu_index, uuid, name, memory_total_mib,
              power_limit_w, mig)
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int2[], $4::text[], $5::int2[], $6::text[], $7::text[],
                            $8::int4[], $9::real[], $10::bool[])
       ON CONFLICT (agent_id, gpu) DO UPDATE SET vendor = excluded.vendor, gpu_index = excluded.gpu_index,
              uuid = excluded.uuid, name = excluded.name, memory_total_mib = excluded.memory_total_mib,
              power_limit_w = excluded.power_limit_w, mig = excluded.mig, last_seen_at = now()`,
      [
        gpus.map((d) => d.tenantId),
        gpus.map((d) => d.agentId),
        gpus.map((d) => d.gpu),
        gpus.map((d) => d.vendor),
        gpus.map((d) => d.index),
        gpus.map((d) => d.uuid),
        gpus.map((d) => d.name),
        gpus.map((d) => d.memoryTotalMiB),
        gpus.map((d) => d.powerLimitW),
        gpus.map((d) => d.mig),
      ],
    );
  }

  /** The batch's agents (tenant, revoked) and the jobs its samples name (tenant, agent), in one read. */
  private lookup(batch: readonly IngestMessage[]) {
    const agentIds = [...new Set(batch.map((b) => b.agentId))];
    const jobIds = [...new Set(batch.flatMap((b) => b.message.jobs))];
    return this.tx.system(async (m) => {
      const agents: { id: string; tenant_id: string; revoked: boolean }[] = await m.query(
        `SELECT id, tenant_id, revoked_at IS NOT NULL AS revoked FROM agents WHERE id = ANY($1::uuid[])`,
        [agentIds],
      );
      const jobs: { id: string; tenant_id: string; agent_id: string | null }[] = jobIds.length
        ? await m.query(`SELECT id, tenant_id, agent_id FROM jobs WHERE id = ANY($1::uuid[])`, [jobIds])
        : [];
      return {
        agents: new Map(agents.map((r) => [r.id, { tenantId: r.tenant_id, revoked: r.revoked }])),
        jobs: new Map(jobs.map((r) => [r.id, { tenantId: r.tenant_id, agentId: r.agent_id }])),
      };
    });
  }
}
