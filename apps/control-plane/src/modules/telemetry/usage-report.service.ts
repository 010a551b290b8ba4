/**
 * The usage report: GPU-hours, idle GPU-hours, energy and cost per project, user and GPU model over
 * whole minutes [from, to). Whole hours inside the range are read from the 1-hour rollups and the
 * edges from the 1-minute ones; both hold time-weighted sums of the same raw samples, so the totals
 * are the integral of the raw samples (sample value × the time it stands for, at most 60 s per GPU
 * and minute). Minutes the rollups have not reached yet (the last minute or two of a report that
 * ends now) are summed from the raw samples the same way, so a report is complete up to its end. A
 * caller who reads telemetry only in some projects gets only those projects' rows.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../../platform/auth/principal.js';
import { scopeOf } from '../../platform/access/grants.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { floorTo } from './clock.js';
import { GPU_READINGS, gpuMinuteScale } from './rollup-sql.js';
import { TelemetryRangeError } from './telemetry.errors.js';
import { readSettings } from './telemetry-settings.service.js';
import type { UsageReport, UsageRow } from './usage.model.js';

/** The longest range a report covers. */
const MAX_REPORT_DAYS = 400;
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

interface Part {
  table: 'telemetry_gpu_1h' | 'telemetry_gpu_1m' | 'raw';
  from: Date;
  to: Date;
}

/**
 * The raw samples' GPU readings held by jobs, as rows like the rollups' (`$1` projects, `$from`/`$to`
 * the range, whole minutes, `$threshold` the idle threshold): what the 1-minute rollup would make of
 * those minutes, each GPU's minute capped at 60 s the same way (over all its readings, the ones no
 * job holds included), so that a report says the same before and after the rollup.
 */
function rawPart(from: string, to: string, threshold: string): string {
  return `SELECT b.agent_id, b.gpu, j.project_id, j.created_by AS user_id, b.seconds * b.k AS seconds,
                 b.idle_seconds * b.k AS idle_seconds, b.energy_j * b.k AS energy_j
            FROM (SELECT b.*, ${gpuMinuteScale('b')} AS k
                    FROM (SELECT r.tenant_id, r.agent_id, g.gpu, date_trunc('minute', r.at) AS bucket, g.job_id,
                                 sum(r.interval_s) AS seconds,
                                 coalesce(sum(r.interval_s) FILTER (WHERE g.util_pct < ${threshold}), 0) AS idle_seconds,
                                 coalesce(sum(g.power_w::float8 * r.interval_s), 0) AS energy_j
                            FROM telemetry_samples r ${GPU_READINGS}
                           WHERE r.at >= ${from} AND r.at < ${to}
                           GROUP BY r.tenant_id, r.agent_id, g.gpu, date_trunc('minute', r.at), g.job_id) b) b
            JOIN jobs j ON j.id = b.job_id AND j.tenant_id = b.tenant_id
           WHERE $1::uuid[] IS NULL OR j.project_id = ANY($1::uuid[])`;
}

@Injectable()
export class UsageReportService {
  constructor(@Inject(Transactions) private readonly tx: Transactions) {}

  async report(p: Principal, fromInput: Date, toInput: Date): Promise<UsageReport> {
    const from = floorTo(fromInput, 'minute');
    const to = floorTo(toInput, 'minute');
    if (isNaN(from.getTime()) || isNaN(to.getTime()) || from >= to)
      throw new TelemetryRangeError('from must be at least a minute before to');
    if (to.getTime() - from.getTime() > MAX_REPORT_DAYS * DAY_MS)
      throw new TelemetryRangeError(`a report covers at most ${MAX_REPORT_DAYS} days`);
    const readable = scopeOf(p.grants, 'telemetry:read');
    const projects = readable === 'organization' ? null : [...readable];
    return this.tx.tenant(p.tenantId, async (m) => {
      const settings = await readSettings(m);
      // The rollups' watermark: minutes before it are rolled up (telemetry_tasks is the system's).
      const [{ done_until: rolledUntil }]: { done_until: Date | null }[] = await this.tx.elevated(
        m,
        p.tenantId,
        (sys) => sys.query(`SELECT done_until FROM telemetry_tasks WHERE name = 'rollup'`),
      );
      const parts = withRawTail(split(from, to), floorTo(rolledUntil ?? from, 'minute'));
      const threshold = `$${2 * parts.length + 2}`;
      const union = parts
        .map((part, i) =>
          part.table === 'raw'
            ? rawPart(`$${2 * i + 2}`, `$${2 * i + 3}`, threshold)
            : `SELECT agent_id, gpu, project_id, user_id, seconds, idle_seconds, energy_j FROM ${part.table}
                WHERE bucket >= $${2 * i + 2} AND bucket < $${2 * i + 3} AND job_id IS NOT NULL
                  AND ($1::uuid[] IS NULL OR project_id = ANY($1::uuid[]))`,
        )
        .join(' UNION ALL ');
      const rows: {
        project_id: string | null;
        project_name: string | null;
        user_id: string | null;
        user_label: string | null;
        model: string | null;
        seconds: number;
        idle_seconds: number;
        energy_j: number;
      }[] = await m.query(
        `SELECT u.project_id, pr.name AS project_name, u.user_id, coalesce(us.email, us.name) AS user_label,
                g.name AS model, sum(u.seconds) AS seconds, sum(u.idle_seconds) AS idle_seconds,
                sum(u.energy_j) AS energy_j
           FROM (${union}) u
           LEFT JOIN telemetry_gpus g ON g.agent_id = u.agent_id AND g.gpu = u.gpu
           LEFT JOIN projects pr ON pr.id = u.project_id
           LEFT JOIN users us ON us.id = u.user_id
          GROUP BY u.project_id, pr.name, u.user_id, us.email, us.name, g.name
          ORDER BY pr.name NULLS FIRST, user_label NULLS FIRST, g.name`,
        [
          projects,
          ...parts.flatMap((part) => [part.from, part.to]),
          ...(parts.some((part) => part.table === 'raw') ? [settings.idle_threshold_pct] : []),
        ],
      );
      const out: UsageRow[] = rows.map((r) => {
        const gpuModel = r.model ?? 'unknown';
        const gpuHours = Number(r.seconds) / 3600;
        const price = settings.gpu_prices[gpuModel] ?? null;
        return {
          projectId: r.project_id,
          projectName: r.project_name,
          userId: r.user_id,
          user: r.user_label,
          gpuModel,
          gpuHours,
          idleGpuHours: Number(r.idle_seconds) / 3600,
          energyKwh: Number(r.energy_j) / 3.6e6,
          pricePerGpuHour: price,
          cost: price === null ? null : gpuHours * price,
        };
      });
      const sum = (f: (r: UsageRow) => number) => out.reduce((a, r) => a + f(r), 0);
      return {
        from,
        to,
        currency: settings.currency,
        rows: out,
        totals: {
          gpuHours: sum((r) => r.gpuHours),
          idleGpuHours: sum((r) => r.idleGpuHours),
          energyKwh: sum((r) => r.energyKwh),
          cost: sum((r) => r.cost ?? 0),
          unpricedGpuHours: sum((r) => (r.cost === null ? r.gpuHours : 0)),
        },
      };
    });
  }

  async csv(p: Principal, from: Date, to: Date): Promise<string> {
    return toCsv(await this.report(p, from, to));
  }
}

/** Whole hours from the hourly rollups, the minutes around them from the 1-minute ones. */
export function split(from: Date, to: Date): Part[] {
  const firstHour = new Date(Math.ceil(from.getTime() / HOUR_MS) * HOUR_MS);
  const lastHour = floorTo(to, 'hour');
  if (firstHour >= lastHour) return [{ table: 'telemetry_gpu_1m', from, to }];
  const parts: Part[] = [{ table: 'telemetry_gpu_1h', from: firstHour, to: lastHour }];
  if (from < firstHour) parts.push({ table: 'telemetry_gpu_1m', from, to: firstHour });
  if (lastHour < to) parts.push({ table: 'telemetry_gpu_1m', from: lastHour, to });
  return parts;
}

/**
 * The parts with what lies at or after `rolledUntil` (a whole minute) read from the raw samples
 * instead. An hour that the watermark is inside is read from its minutes up to the watermark: a
 * rollup pass running meanwhile adds later minutes to that hour, never to those minutes.
 */
export function withRawTail(parts: Part[], rolledUntil: Date): Part[] {
  const out: Part[] = [];
  const add = (table: Part['table'], from: Date, to: Date) => {
    if (from < to) out.push({ table, from, to });
  };
  const hour = floorTo(rolledUntil, 'hour');
  for (const { table, from, to } of parts) {
    if (to <= (table === 'telemetry_gpu_1h' ? hour : rolledUntil)) add(table, from, to);
    else if (from >= rolledUntil) add('raw', from, to);
    else if (table === 'telemetry_gpu_1h') {
      add(table, from, hour);
      add('telemetry_gpu_1m', from > hour ? from : hour, rolledUntil);
      add('raw', rolledUntil, to);
    } else {
      add(table, from, rolledUntil);
      add('raw', rolledUntil, to);
    }
  }
  return out;
}

const CSV_COLUMNS = [
  'project_id',
  'project',
  'user_id',
  'user',
  'gpu_model',
  'gpu_hours',
  'idle_gpu_hours',
  'energy_kwh',
  'price_per_gpu_hour',
  'cost',
  'currency',
] as const;

/**
 * RFC 4180 CSV. Text that a spreadsheet would take for a formula (=, +, -, @ first) is prefixed with
 * an apostrophe: project names and emails are user input.
 */
export function toCsv(report: UsageReport): string {
  const text = (v: string | null) => {
    if (v === null) return '';
    const safe = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
    return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
  };
  const number = (v: number | null) => (v === null ? '' : String(Math.round(v * 1e6) / 1e6));
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of report.rows)
    lines.push(
      [
        text(r.projectId),
        text(r.projectName),
        text(r.userId),
        text(r.user),
        text(r.gpuModel),
        number(r.gpuHours),
        number(r.idleGpuHours),
        number(r.energyKwh),
        number(r.pricePerGpuHour),
        number(r.cost),
        text(report.currency),
      ].join(','),
    );
  return `${lines.join('\r\n')}\r\n`;
}
