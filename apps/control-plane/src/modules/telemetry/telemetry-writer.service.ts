/**
 * Writes a batch of telemetry messages (from many agents, often many tenants) in one transaction:
 * a multi-row INSERT per table (unnest of column arrays), the GPUs' descriptions, and the minutes that
 * got samples after they were rolled up. Runs as hearth_system: one transaction per flush rather than
 * one per tenant is what makes 20,000 samples a second fit; the tenant of every row comes from the
 * NATS subject (which nats-server only lets the agent itself publish on) and must match the agents
 * table, checked here for the whole batch at once, as are the attempts that say when each named job
 * ran on which agent (readings outside them are kept with no job) and each message's previous stored
 * sample (a sample stands for no more time than has passed since it; see ingest-rows.ts).
 * Redelivered samples are no-ops (primary keys).
 */
import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { TELEMETRY_INTERVAL } from '@hearth/contracts';
import { CONFIG, type Config } from '../../config/config.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import {
  describeGpus,
  earliestKept,
  IngestRows,
  sampleTimes,
  type GpuDescription,
  type IngestBounds,
  type IngestMessage,
  type JobAttemptSpan,
} from './ingest-rows.js';

export interface WriteResult {
  /** Why a message was refused, by its position in the batch; absent: written. */
  refused: Map<number, string>;
  hostSamples: number;
  gpuSamples: number;
  outOfRange: number;
  unknownJobs: number;
  /** Job references left out because the sample lies outside the job's run on its agent. */
  outsideRun: number;
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
    // An hour inside raw retention, so the day partition cannot be dropped under the insert.
    const range = {
      minAt: now - this.config.telemetry.retentionDays.raw * DAY_MS + 3_600_000,
      maxAt: now + MAX_FUTURE_MS,
    };
    // Each message's sample times, parsed once: the lookup and the rows both need them.
    const times = batch.map((b) => sampleTimes(b.message, range));
    const { agents, attempts, stored } = await this.lookup(batch, times);
    const t1 = performance.now();
    batch.forEach((b, i) => {
      const agent = agents.get(b.agentId);
      if (!agent || agent.tenantId !== b.tenantId) refused.set(i, 'unknown agent');
      else if (agent.revoked) refused.set(i, 'revoked agent');
    });
    const rows = new IngestRows();
    const bounds: IngestBounds = {
      ...range,
      attempts: (jobId) => attempts.get(jobId) ?? [],
      storedBefore: (agentId, at) => stored.get(`${agentId}@${at}`) ?? null,
    };
    let droppedByAgents = 0;
    batch.forEach((b, i) => {
      if (refused.has(i)) return;
      rows.add(b, bounds, times[i]);
      droppedByAgents += b.message.dropped;
    });
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
      outsideRun: rows.outsideRun,
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

  /**
   * What the batch needs to know, in one transaction of three reads: its agents (tenant, revoked);
   * the attempts these agents made of the jobs its samples name (the time each ran, to attribute
   * readings); and, for each message, its agent's latest sample stored less than the longest interval
   * before the message's earliest kept one (the previous sample of its first). One read for the
   * batch, not one per message. It can miss a message another replica commits meanwhile, or one that
   * arrives out of order; what that adds is at most one interval per message, and the rollup's cap
   * of 60 s per GPU and minute bounds it.
   */
  private lookup(batch: readonly IngestMessage[], times: readonly (readonly (number | null)[])[]) {
    const agentIds = [...new Set(batch.map((b) => b.agentId))];
    const jobIds = [...new Set(batch.flatMap((b) => b.message.jobs))];
    const firsts = new Map(
      batch.flatMap((b, i) => {
        const at = earliestKept(times[i]);
        return at === null ? [] : [[`${b.agentId}@${at}`, { agentId: b.agentId, at }] as const];
      }),
    );
    return this.tx.system(async (m) => {
      const agents: { id: string; tenant_id: string; revoked: boolean }[] = await m.query(
        `SELECT id, tenant_id, revoked_at IS NOT NULL AS revoked FROM agents WHERE id = ANY($1::uuid[])`,
        [agentIds],
      );
      const attempts: {
        job_id: string;
        tenant_id: string;
        agent_id: string;
        since: Date;
        until: Date | null;
      }[] = jobIds.length
        ? await m.query(
            // An attempt that ended with no end time (none should) counts as having ended at its start.
            `SELECT job_id, tenant_id, agent_id, coalesce(started_at, created_at) AS since,
                    CASE WHEN state NOT IN ('DISPATCHED', 'RUNNING')
                         THEN coalesce(finished_at, started_at, created_at) END AS until
               FROM job_attempts WHERE job_id = ANY($1::uuid[]) AND agent_id = ANY($2::uuid[])`,
            [jobIds, agentIds],
          )
        : [];
      const pairs = [...firsts.values()];
      const previous: { agent_id: string; at: Date; before: Date | null }[] = pairs.length
        ? await m.query(
            `SELECT p.agent_id, p.at, s.at AS before
               FROM unnest($1::uuid[], $2::timestamptz[]) AS p(agent_id, at)
               LEFT JOIN LATERAL (
                 SELECT at FROM telemetry_samples s
                  WHERE s.agent_id = p.agent_id AND s.at < p.at AND s.at > p.at - make_interval(secs => $3)
                  ORDER BY s.at DESC LIMIT 1) s ON true`,
            [pairs.map((p) => p.agentId), pairs.map((p) => new Date(p.at)), TELEMETRY_INTERVAL.max],
          )
        : [];
      const spans = new Map<string, JobAttemptSpan[]>();
      for (const a of attempts) {
        const list = spans.get(a.job_id) ?? [];
        list.push({
          tenantId: a.tenant_id,
          agentId: a.agent_id,
          from: a.since.getTime(),
          until: a.until === null ? null : a.until.getTime(),
        });
        spans.set(a.job_id, list);
      }
      return {
        agents: new Map(agents.map((r) => [r.id, { tenantId: r.tenant_id, revoked: r.revoked }])),
        attempts: spans,
        stored: new Map(
          previous.flatMap((r) =>
            r.before === null ? [] : [[`${r.agent_id}@${r.at.getTime()}`, r.before.getTime()] as const],
          ),
        ),
      };
    });
  }
}
