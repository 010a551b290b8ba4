/**
 * The rollup statements. Raw samples → 1-minute buckets; 1-minute → 1-hour buckets. Every sum is
 * time-weighted (value × the sample's interval), so means and integrals agree at every resolution:
 * a bucket's mean is weighted / seconds, a range's GPU-seconds is the sum of `seconds`.
 *
 * A GPU has 60 seconds in a minute, and so has a host. Ingest already counts a sample for no more
 * time than passed since the agent's previous one, but it cannot see every order samples may arrive
 * in; so a GPU's minute (all its jobs' buckets together) or a host's minute whose samples add up to
 * more is scaled down to 60 s: every time-weighted sum by the same factor, so means are unchanged.
 *
 * `from` and `where` say what the aggregate reads: a time range of the whole fleet (the regular pass) or a
 * list of (agent, minute|hour) pairs (late samples). Times are UTC (date_trunc with a zone).
 */

const GPU_COLUMNS = `tenant_id, agent_id, gpu, bucket, job_id, project_id, user_id, samples, seconds, util_seconds,
  util_weighted, util_min, util_max, idle_seconds, mem_seconds, mem_weighted, mem_max_mib, power_seconds, energy_j,
  power_max_w, temperature_max_c`;

const HOST_COLUMNS = `tenant_id, agent_id, bucket, samples, seconds, cpu_seconds, cpu_weighted, cpu_max_pct, mem_seconds,
  mem_weighted, mem_max_mib, mem_total_mib, disk_read_bytes, disk_write_bytes, net_rx_bytes, net_tx_bytes, dropped`;

/** The most seconds a GPU's minute, or a host's, holds. */
export const SECONDS_PER_MINUTE = 60;

/**
 * The factor that scales the 1-minute GPU buckets `b` (one per job) of a GPU's minute down to
 * SECONDS_PER_MINUTE in all: 1 unless their seconds add up to more. `b` has agent_id, gpu, bucket,
 * seconds; the usage report's raw part applies it as the rollup does, so a report says the same
 * before and after the rollup.
 */
export function gpuMinuteScale(b: string): string {
  return `least(1, ${SECONDS_PER_MINUTE} / (sum(${b}.seconds) OVER (PARTITION BY ${b}.agent_id, ${b}.gpu, ${b}.bucket))::float8)`;
}

/** A sample's GPU readings, one row each (`r` is the sample). */
export const GPU_READINGS = `CROSS JOIN LATERAL unnest(r.gpu, r.gpu_job_id, r.gpu_util_pct, r.gpu_mem_used_mib, r.gpu_power_w,
  r.gpu_temperature_c) AS g(gpu, job_id, util_pct, mem_used_mib, power_w, temperature_c)`;

/**
 * 1-minute GPU buckets from the GPU readings of raw samples `r` (`from` names them `r`, `where`
 * selects them). Readings are grouped first and joined to their job (project, user) after, so the
 * join is per bucket, not per reading; the cap of 60 s per GPU and minute is a window over those
 * buckets. Minutes are truncated in the session's zone: every zone in use today is a whole number
 * of minutes from UTC, and the one-argument form is the fast one.
 */
export function gpuMinutes(from: string, where: string): string {
  return `INSERT INTO telemetry_gpu_1m (${GPU_COLUMNS})
    SELECT a.tenant_id, a.agent_id, a.gpu, a.bucket, a.job_id, j.project_id, j.created_by, a.samples, a.seconds * a.k,
           a.util_seconds * a.k, a.util_weighted * a.k, a.util_min, a.util_max, a.idle_seconds * a.k,
           a.mem_seconds * a.k, a.mem_weighted * a.k, a.mem_max_mib, a.power_seconds * a.k, a.energy_j * a.k,
           a.power_max_w, a.temperature_max_c
      FROM (SELECT b.*, ${gpuMinuteScale('b')} AS k
              FROM (SELECT s.tenant_id, s.agent_id, s.gpu, date_trunc('minute', s.at) AS bucket, s.job_id,
                   count(*) AS samples, sum(s.interval_s) AS seconds,
                   coalesce(sum(s.interval_s) FILTER (WHERE s.util_pct IS NOT NULL), 0) AS util_seconds,
                   coalesce(sum(s.util_pct::float8 * s.interval_s), 0) AS util_weighted,
                   min(s.util_pct) AS util_min, max(s.util_pct) AS util_max,
                   coalesce(sum(s.interval_s) FILTER (WHERE s.util_pct < s.threshold), 0) AS idle_seconds,
                   coalesce(sum(s.interval_s) FILTER (WHERE s.mem_used_mib IS NOT NULL), 0) AS mem_seconds,
                   coalesce(sum(s.mem_used_mib::float8 * s.interval_s), 0) AS mem_weighted,
                   max(s.mem_used_mib) AS mem_max_mib,
                   coalesce(sum(s.interval_s) FILTER (WHERE s.power_w IS NOT NULL), 0) AS power_seconds,
                   coalesce(sum(s.power_w::float8 * s.interval_s), 0) AS energy_j,
                   max(s.power_w) AS power_max_w, max(s.temperature_c) AS temperature_max_c
              FROM (SELECT r.tenant_id, r.agent_id, r.at, r.interval_s, coalesce(st.idle_threshold_pct, 5) AS threshold, g.*
                      FROM ${from} LEFT JOIN telemetry_settings st ON st.tenant_id = r.tenant_id ${GPU_READINGS}
                     WHERE ${where}) s
             GROUP BY s.tenant_id, s.agent_id, s.gpu, date_trunc('minute', s.at), s.job_id) b) a
      LEFT JOIN jobs j ON j.id = a.job_id AND j.tenant_id = a.tenant_id`;
}

/** 1-minute host buckets from raw samples (`from` names them `s`), capped at 60 s like a GPU's. */
export function hostMinutes(from: string, where: string): string {
  return `INSERT INTO telemetry_host_1m (${HOST_COLUMNS})
    SELECT h.tenant_id, h.agent_id, h.bucket, h.samples, h.seconds * h.k, h.cpu_seconds * h.k, h.cpu_weighted * h.k,
           h.cpu_max_pct, h.mem_seconds * h.k, h.mem_weighted * h.k, h.mem_max_mib, h.mem_total_mib,
           h.disk_read_bytes * h.k, h.disk_write_bytes * h.k, h.net_rx_bytes * h.k, h.net_tx_bytes * h.k, h.dropped
      FROM (SELECT s.tenant_id, s.agent_id, date_trunc('minute', s.at) AS bucket, count(*) AS samples,
                   sum(s.interval_s) AS seconds, least(1, ${SECONDS_PER_MINUTE} / sum(s.interval_s)::float8) AS k,
                   coalesce(sum(s.interval_s) FILTER (WHERE s.cpu_pct IS NOT NULL), 0) AS cpu_seconds,
                   coalesce(sum(s.cpu_pct::float8 * s.interval_s), 0) AS cpu_weighted, max(s.cpu_pct) AS cpu_max_pct,
                   coalesce(sum(s.interval_s) FILTER (WHERE s.mem_used_mib IS NOT NULL), 0) AS mem_seconds,
                   coalesce(sum(s.mem_used_mib::float8 * s.interval_s), 0) AS mem_weighted,
                   max(s.mem_used_mib) AS mem_max_mib, max(s.mem_total_mib) AS mem_total_mib,
                   coalesce(sum(s.disk_read_bps * s.interval_s), 0) AS disk_read_bytes,
                   coalesce(sum(s.disk_write_bps * s.interval_s), 0) AS disk_write_bytes,
                   coalesce(sum(s.net_rx_bps * s.interval_s), 0) AS net_rx_bytes,
                   coalesce(sum(s.net_tx_bps * s.interval_s), 0) AS net_tx_bytes, sum(s.dropped_before) AS dropped
              FROM ${from}
             WHERE ${where}
             GROUP BY s.tenant_id, s.agent_id, date_trunc('minute', s.at)) h`;
}

const GPU_HOUR_SELECT = `SELECT g.tenant_id, g.agent_id, g.gpu, date_trunc('hour', g.bucket, 'UTC'), g.job_id, g.project_id,
           g.user_id, sum(g.samples), sum(g.seconds), sum(g.util_seconds), sum(g.util_weighted), min(g.util_min),
           max(g.util_max), sum(g.idle_seconds), sum(g.mem_seconds), sum(g.mem_weighted), max(g.mem_max_mib),
           sum(g.power_seconds), sum(g.energy_j), max(g.power_max_w), max(g.temperature_max_c)`;
const GPU_HOUR_GROUP = `GROUP BY g.tenant_id, g.agent_id, g.gpu, date_trunc('hour', g.bucket, 'UTC'), g.job_id, g.project_id, g.user_id`;

const HOST_HOUR_SELECT = `SELECT g.tenant_id, g.agent_id, date_trunc('hour', g.bucket, 'UTC'), sum(g.samples), sum(g.seconds),
           sum(g.cpu_seconds), sum(g.cpu_weighted), max(g.cpu_max_pct), sum(g.mem_seconds), sum(g.mem_weighted),
           max(g.mem_max_mib), max(g.mem_total_mib), sum(g.disk_read_bytes), sum(g.disk_write_bytes),
           sum(g.net_rx_bytes), sum(g.net_tx_bytes), sum(g.dropped)`;
const HOST_HOUR_GROUP = `GROUP BY g.tenant_id, g.agent_id, date_trunc('hour', g.bucket, 'UTC')`;

const add = (c: string, t: string) => `${c} = ${t}.${c} + excluded.${c}`;

/** Slice $4 of $3 of the fleet, by agent (a big fleet's minute is rolled up a slice at a time). */
function slice(alias: string): string {
  return `(hashtext(${alias}.agent_id::text) & 2147483647) % $3 = $4`;
}

/**
 * Adds minutes [$1, $2) of 1-minute buckets (of slice $4 of $3) to their hours. Only for minutes rolled up for the first
 * time (the watermark guarantees each minute is added once).
 */
export const GPU_HOURS_ADD = `INSERT INTO telemetry_gpu_1h (${GPU_COLUMNS})
    ${GPU_HOUR_SELECT} FROM telemetry_gpu_1m g WHERE g.bucket >= $1 AND g.bucket < $2 AND ${slice('g')} ${GPU_HOUR_GROUP}
    ON CONFLICT (agent_id, bucket, gpu, job_id) DO UPDATE SET
      ${['samples', 'seconds', 'util_seconds', 'util_weighted', 'idle_seconds', 'mem_seconds', 'mem_weighted', 'power_seconds', 'energy_j'].map((c) => add(c, 'telemetry_gpu_1h')).join(', ')},
      util_min = least(telemetry_gpu_1h.util_min, excluded.util_min),
      util_max = greatest(telemetry_gpu_1h.util_max, excluded.util_max),
      mem_max_mib = greatest(telemetry_gpu_1h.mem_max_mib, excluded.mem_max_mib),
      power_max_w = greatest(telemetry_gpu_1h.power_max_w, excluded.power_max_w),
      temperature_max_c = greatest(telemetry_gpu_1h.temperature_max_c, excluded.temperature_max_c)`;

export const HOST_HOURS_ADD = `INSERT INTO telemetry_host_1h (${HOST_COLUMNS})
    ${HOST_HOUR_SELECT} FROM telemetry_host_1m g WHERE g.bucket >= $1 AND g.bucket < $2 AND ${slice('g')} ${HOST_HOUR_GROUP}
    ON CONFLICT (agent_id, bucket) DO UPDATE SET
      ${['samples', 'seconds', 'cpu_seconds', 'cpu_weighted', 'mem_seconds', 'mem_weighted', 'disk_read_bytes', 'disk_write_bytes', 'net_rx_bytes', 'net_tx_bytes', 'dropped'].map((c) => add(c, 'telemetry_host_1h')).join(', ')},
      cpu_max_pct = greatest(telemetry_host_1h.cpu_max_pct, excluded.cpu_max_pct),
      mem_max_mib = greatest(telemetry_host_1h.mem_max_mib, excluded.mem_max_mib),
      mem_total_mib = greatest(telemetry_host_1h.mem_total_mib, excluded.mem_total_mib)`;

/** Pairs of (agent, minute) given as $1 uuid[] and $2 timestamptz[]. */
const MINUTE_PAIRS = `unnest($1::uuid[], $2::timestamptz[]) AS p(agent_id, at)`;
/** Pairs of (agent, hour) given as $1 uuid[] and $2 timestamptz[]. */
const HOUR_PAIRS = MINUTE_PAIRS;

/** Redoing late minutes: their 1-minute buckets from raw, then their hours from 1-minute buckets. */
export const LATE = {
  deleteGpuMinutes: `DELETE FROM telemetry_gpu_1m g USING ${MINUTE_PAIRS} WHERE g.agent_id = p.agent_id AND g.bucket = p.at`,
  deleteHostMinutes: `DELETE FROM telemetry_host_1m g USING ${MINUTE_PAIRS} WHERE g.agent_id = p.agent_id AND g.bucket = p.at`,
  gpuMinutes: gpuMinutes(
    `${MINUTE_PAIRS} JOIN telemetry_samples r ON r.agent_id = p.agent_id AND r.at >= p.at AND r.at < p.at + interval '1 minute'`,
    'true',
  ),
  hostMinutes: hostMinutes(
    `${MINUTE_PAIRS} JOIN telemetry_samples s ON s.agent_id = p.agent_id AND s.at >= p.at AND s.at < p.at + interval '1 minute'`,
    'true',
  ),
  deleteGpuHours: `DELETE FROM telemetry_gpu_1h g USING ${HOUR_PAIRS} WHERE g.agent_id = p.agent_id AND g.bucket = p.at`,
  deleteHostHours: `DELETE FROM telemetry_host_1h g USING ${HOUR_PAIRS} WHERE g.agent_id = p.agent_id AND g.bucket = p.at`,
  gpuHours: `INSERT INTO telemetry_gpu_1h (${GPU_COLUMNS}) ${GPU_HOUR_SELECT}
    FROM ${HOUR_PAIRS} JOIN telemetry_gpu_1m g ON g.agent_id = p.agent_id AND g.bucket >= p.at AND g.bucket < p.at + interval '1 hour'
    ${GPU_HOUR_GROUP}`,
  hostHours: `INSERT INTO telemetry_host_1h (${HOST_COLUMNS}) ${HOST_HOUR_SELECT}
    FROM ${HOUR_PAIRS} JOIN telemetry_host_1m g ON g.agent_id = p.agent_id AND g.bucket >= p.at AND g.bucket < p.at + interval '1 hour'
    ${HOST_HOUR_GROUP}`,
};

/** The regular pass over a time range [$1, $2), for slice $4 of $3 of the fleet's agents. */
export const RANGE = {
  gpuMinutes: gpuMinutes('telemetry_samples r', `r.at >= $1 AND r.at < $2 AND ${slice('r')}`),
  hostMinutes: hostMinutes('telemetry_samples s', `s.at >= $1 AND s.at < $2 AND ${slice('s')}`),
};
