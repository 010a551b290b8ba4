/**
 * Time series read the same way at every resolution: each resolution's table is presented as rows of
 * the same time-weighted sums (a raw sample is a bucket of one), and points are sums over them.
 */
import { GPU_READINGS } from './rollup-sql.js';
import type { GpuPoint, HostPoint } from './telemetry.model.js';
import { TelemetryResolution } from './telemetry.model.js';

const GPU_TABLE = { MINUTE: 'telemetry_gpu_1m', HOUR: 'telemetry_gpu_1h' } as const;
const HOST_TABLE = { MINUTE: 'telemetry_host_1m', HOUR: 'telemetry_host_1h' } as const;

/** GPU rows as (t, agent_id, gpu, job_id, project_id, time-weighted sums). */
export function gpuSource(resolution: TelemetryResolution): string {
  if (resolution === TelemetryResolution.RAW)
    return `(SELECT r.at AS t, r.agent_id, g.gpu, g.job_id, j.project_id, 1 AS samples, r.interval_s::float8 AS seconds,
                    CASE WHEN g.util_pct IS NULL THEN 0 ELSE r.interval_s END::float8 AS util_seconds,
                    coalesce(g.util_pct::float8 * r.interval_s, 0) AS util_weighted, g.util_pct AS util_max,
                    CASE WHEN g.mem_used_mib IS NULL THEN 0 ELSE r.interval_s END::float8 AS mem_seconds,
                    coalesce(g.mem_used_mib::float8 * r.interval_s, 0) AS mem_weighted,
                    CASE WHEN g.power_w IS NULL THEN 0 ELSE r.interval_s END::float8 AS power_seconds,
                    coalesce(g.power_w::float8 * r.interval_s, 0) AS energy_j, g.temperature_c AS temp_max
               FROM telemetry_samples r ${GPU_READINGS} LEFT JOIN jobs j ON j.id = g.job_id)`;
  return `(SELECT bucket AS t, agent_id, gpu, job_id, project_id, samples, seconds, util_seconds, util_weighted,
                  util_max, mem_seconds, mem_weighted, power_seconds, energy_j, temperature_max_c AS temp_max
             FROM ${GPU_TABLE[resolution]})`;
}

export function hostSource(resolution: TelemetryResolution): string {
  if (resolution === TelemetryResolution.RAW)
    return `(SELECT at AS t, agent_id, 1 AS samples, interval_s::float8 AS seconds,
                    CASE WHEN cpu_pct IS NULL THEN 0 ELSE interval_s END::float8 AS cpu_seconds,
                    coalesce(cpu_pct::float8 * interval_s, 0) AS cpu_weighted, cpu_pct AS cpu_max,
                    CASE WHEN mem_used_mib IS NULL THEN 0 ELSE interval_s END::float8 AS mem_seconds,
                    coalesce(mem_used_mib::float8 * interval_s, 0) AS mem_weighted, mem_total_mib AS mem_total,
                    coalesce(disk_read_bps * interval_s, 0) AS disk_read, coalesce(disk_write_bps * interval_s, 0) AS disk_write,
                    coalesce(net_rx_bps * interval_s, 0) AS net_rx, coalesce(net_tx_bps * interval_s, 0) AS net_tx,
                    dropped_before AS dropped
               FROM telemetry_samples)`;
  return `(SELECT bucket AS t, agent_id, samples, seconds, cpu_seconds, cpu_weighted, cpu_max_pct AS cpu_max,
                  mem_seconds, mem_weighted, mem_total_mib AS mem_total, disk_read_bytes AS disk_read,
                  disk_write_bytes AS disk_write, net_rx_bytes AS net_rx, net_tx_bytes AS net_tx, dropped
             FROM ${HOST_TABLE[resolution]})`;
}

/** The bucket's length in seconds: a raw sample's own interval, else the bucket's. */
function bucketSeconds(resolution: TelemetryResolution): string {
  return resolution === TelemetryResolution.RAW ? 'max(seconds)' : resolution === 'MINUTE' ? '60' : '3600';
}

/** GPU point columns, summed over whatever the query groups by. */
export function gpuPointColumns(resolution: TelemetryResolution): string {
  const bucket = bucketSeconds(resolution);
  return `t AS at, sum(samples)::int AS samples, sum(seconds) AS gpu_seconds, sum(seconds) / ${bucket} AS gpus,
          sum(util_weighted) / nullif(sum(util_seconds), 0) AS utilization_pct, max(util_max) AS utilization_max_pct,
          sum(mem_weighted) / nullif(sum(mem_seconds), 0) AS memory_used_mib,
          CASE WHEN sum(power_seconds) > 0 THEN sum(energy_j) / ${bucket} END AS power_w,
          sum(energy_j) / 3600 AS energy_wh, max(temp_max) AS temperature_max_c`;
}

export function hostPointColumns(): string {
  return `t AS at, sum(samples)::int AS samples, sum(cpu_weighted) / nullif(sum(cpu_seconds), 0) AS cpu_pct,
          max(cpu_max) AS cpu_max_pct, sum(mem_weighted) / nullif(sum(mem_seconds), 0) AS memory_used_mib,
          max(mem_total) AS memory_total_mib, sum(disk_read) / nullif(sum(seconds), 0) AS disk_read_bps,
          sum(disk_write) / nullif(sum(seconds), 0) AS disk_write_bps, sum(net_rx) / nullif(sum(seconds), 0) AS net_rx_bps,
          sum(net_tx) / nullif(sum(seconds), 0) AS net_tx_bps, sum(dropped)::int AS dropped`;
}

export interface GpuPointRow {
  at: Date;
  samples: number;
  gpu_seconds: number;
  gpus: number;
  utilization_pct: number | null;
  utilization_max_pct: number | null;
  memory_used_mib: number | null;
  power_w: number | null;
  energy_wh: number;
  temperature_max_c: number | null;
}

export interface HostPointRow {
  at: Date;
  samples: number;
  cpu_pct: number | null;
  cpu_max_pct: number | null;
  memory_used_mib: number | null;
  memory_total_mib: string | number | null;
  disk_read_bps: number | null;
  disk_write_bps: number | null;
  net_rx_bps: number | null;
  net_tx_bps: number | null;
  dropped: number;
}

const num = (v: string | number | null): number | null => (v === null ? null : Number(v));

export function toGpuPoint(r: GpuPointRow): GpuPoint {
  return {
    at: r.at,
    samples: r.samples,
    gpuSeconds: Number(r.gpu_seconds),
    gpus: Number(r.gpus),
    utilizationPct: num(r.utilization_pct),
    utilizationMaxPct: num(r.utilization_max_pct),
    memoryUsedMiB: num(r.memory_used_mib),
    powerW: num(r.power_w),
    energyWh: Number(r.energy_wh),
    temperatureMaxC: num(r.temperature_max_c),
  };
}

export function toHostPoint(r: HostPointRow): HostPoint {
  return {
    at: r.at,
    samples: r.samples,
    cpuPct: num(r.cpu_pct),
    cpuMaxPct: num(r.cpu_max_pct),
    memoryUsedMiB: num(r.memory_used_mib),
    memoryTotalMiB: num(r.memory_total_mib),
    diskReadBps: num(r.disk_read_bps),
    diskWriteBps: num(r.disk_write_bps),
    netRxBps: num(r.net_rx_bps),
    netTxBps: num(r.net_tx_bps),
    dropped: r.dropped,
  };
}
