/**
 * Rolls raw samples up to 1-minute and 1-hour buckets. Safe with N replicas: a pass runs inside one
 * transaction holding the `rollup` task row (FOR UPDATE SKIP LOCKED: a replica that finds it taken
 * skips), and that row's watermark moves in the same transaction as the buckets it covers.
 *
 * Regular pass: every minute that ended at least `settle` seconds ago and is not yet rolled up is
 * aggregated from raw once, and added to its hour. Late samples (a backfill after an outage) land in
 * minutes that may already be rolled up: ingest marks those minutes (telemetry_late_minutes, in its
 * own transaction, as its last statement) and this pass redoes their buckets from raw, and their hours
 * from the 1-minute buckets. Why nothing slips between the two: ingest marks every minute that ended
 * more than settle/2 before its transaction's last statement; an unmarked minute therefore ended less
 * than settle/2 before that, and is rolled up no earlier than settle after it ended, by which time the
 * ingest transaction (its statements bounded by a 20 s timeout) has committed.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { CONFIG, type Config } from '../../config/config.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { floorTo } from './clock.js';
import { GPU_HOURS_ADD, HOST_HOURS_ADD, LATE, RANGE } from './rollup-sql.js';

export interface RollupPass {
  /** Minutes [from, to) rolled up for the first time. */
  from: Date;
  to: Date;
  /** (agent, minute) pairs redone for late samples. */
  lateMinutes: number;
}

/** Minutes one pass rolls up at most (a replica catching up works in steps). */
const MAX_MINUTES_PER_PASS = 30;
const MAX_LATE_PER_PASS = 5000;
const MINUTE_MS = 60_000;
/** Samples (hosts' samples, each with its GPUs) per slice of a regular pass. */
const SLICE_SAMPLES = 20_000;
const MAX_REST_MS = 3000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Injectable()
export class TelemetryRollups {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(Transactions) private readonly tx: Transactions,
  ) {}

  /** One pass at time `now`; null when another replica is doing it. */
  async run(now: Date): Promise<RollupPass | null> {
    return this.tx.system(async (m) => {
      const [task]: { done_until: Date | null }[] = await m.query(
        `SELECT done_until FROM telemetry_tasks WHERE name = 'rollup' FOR UPDATE SKIP LOCKED`,
      );
      if (!task) return null;
      // A fleet's minute is a million GPU readings: hashed in memory, not sorted on disk (and JIT
      // compilation costs more than it saves for a statement run once a minute).
      await m.query(`SET LOCAL work_mem = '256MB'; SET LOCAL jit = off`);
      const due = floorTo(
        new Date(now.getTime() - this.config.telemetry.rollupSettleSeconds * 1000),
        'minute',
      );
      const from = task.done_until ?? (await this.firstMinute(m, due));
      const to = new Date(Math.min(due.getTime(), from.getTime() + MAX_MINUTES_PER_PASS * MINUTE_MS));
      if (from < to) await this.rollRange(m, from, to);
      const watermark = from < to ? to : from;
      const lateMinutes = await this.redoLate(m, watermark, now);
      await m.query(`UPDATE telemetry_tasks SET done_until = $1, last_run_at = $2 WHERE name = 'rollup'`, [
        watermark,
        now,
      ]);
      return { from, to: watermark, lateMinutes };
    });
  }

  /**
   * Minutes [from, to) of the whole fleet. A large fleet's minutes are done a slice of agents at a
   * time, resting twice as long as each slice took: the rollup then takes at most a third of a core,
   * and the ingest it shares the machine with keeps its latency. (A 20,000-readings/s fleet's minute
   * is about 6 s of work, so this still keeps well ahead of the clock.)
   */
  private async rollRange(m: EntityManager, from: Date, to: Date): Promise<void> {
    const [{ n }]: { n: number }[] = await m.query(
      `SELECT count(*)::int AS n FROM telemetry_samples WHERE at >= $1 AND at < $2`,
      [from, to],
    );
    const slices = Math.max(1, Math.ceil(n / SLICE_SAMPLES));
    for (let k = 0; k < slices; k++) {
      const started = performance.now();
      for (const sql of [RANGE.gpuMinutes, RANGE.hostMinutes, GPU_HOURS_ADD, HOST_HOURS_ADD])
        await m.query(sql, [from, to, slices, k]);
      if (k < slices - 1) await sleep(Math.min(MAX_REST_MS, 2 * (performance.now() - started)));
    }
  }

  /** Where a first pass starts: the oldest raw sample's minute, or now when there is none. */
  private async firstMinute(m: EntityManager, due: Date): Promise<Date> {
    const [row]: { first: Date | null }[] = await m.query(
      `SELECT date_trunc('minute', min(at), 'UTC') AS first FROM telemetry_samples`,
    );
    return row.first && row.first < due ? row.first : due;
  }

  /**
   * Redoes the minutes marked late that the watermark has passed (the others the regular pass will
   * see anyway), and their hours. Marks older than raw retention have no samples left: dropped.
   */
  private async redoLate(m: EntityManager, watermark: Date, now: Date): Promise<number> {
    const cutoff = new Date(now.getTime() - this.config.telemetry.retentionDays.raw * 86_400_000);
    await m.query(`DELETE FROM telemetry_late_minutes WHERE minute < $1`, [cutoff]);
    // TypeORM answers a DELETE … RETURNING with [rows, count].
    const [marks]: [{ agent_id: string; minute: Date }[], number] = await m.query(
      `DELETE FROM telemetry_late_minutes WHERE (agent_id, minute) IN (
         SELECT agent_id, minute FROM telemetry_late_minutes WHERE minute < $1 ORDER BY minute LIMIT $2)
       RETURNING agent_id, minute`,
      [watermark, MAX_LATE_PER_PASS],
    );
    if (marks.length === 0) return 0;
    const minutes = [marks.map((r) => r.agent_id), marks.map((r) => r.minute)];
    await m.query(LATE.deleteGpuMinutes, minutes);
    await m.query(LATE.deleteHostMinutes, minutes);
    await m.query(LATE.gpuMinutes, minutes);
    await m.query(LATE.hostMinutes, minutes);
    const hours = new Map<string, [string, Date]>();
    for (const r of marks) {
      const hour = floorTo(r.minute, 'hour');
      hours.set(`${r.agent_id}@${hour.getTime()}`, [r.agent_id, hour]);
    }
    const pairs = [[...hours.values()].map(([a]) => a), [...hours.values()].map(([, h]) => h)];
    await m.query(LATE.deleteGpuHours, pairs);
    await m.query(LATE.deleteHostHours, pairs);
    await m.query(LATE.gpuHours, pairs);
    await m.query(LATE.hostHours, pairs);
    return marks.length;
  }
}
