/**
 * Partitions and retention. Daily partitions of the raw and 1-minute tables are made ahead (a few
 * days) and dropped once their whole day is older than retention; 1-hour rows are deleted in
 * bounded batches. Each step is its own short transaction (partition DDL locks the parent table, so
 * it must not wait behind anything long). Every step is idempotent, so any replica may do it; the
 * task row only keeps N replicas from all doing it in the same hour.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { CONFIG, type Config } from '../../config/config.js';
import { LOGGER } from '../../platform/logging/logging.module.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { floorTo } from './clock.js';

export interface RetentionPass {
  partitionsMade: number;
  partitionsDropped: number;
  hourRowsDeleted: number;
}

const DAY_MS = 86_400_000;
const DAYS_AHEAD = 3;
const DELETE_BATCH = 10_000;
const MAX_DELETE_BATCHES = 100;

const day = (date: Date) => date.toISOString().slice(0, 10);

@Injectable()
export class TelemetryRetention {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(Transactions) private readonly tx: Transactions,
  ) {}

  /** Makes the partitions samples may land in now: from raw retention's start to a few days ahead. */
  async ensurePartitions(now: Date): Promise<number> {
    const today = floorTo(now, 'day');
    // Ingest takes samples down to raw retention (plus an hour): their day is never before this one.
    const from = new Date(today.getTime() - this.config.telemetry.retentionDays.raw * DAY_MS);
    const to = new Date(today.getTime() + DAYS_AHEAD * DAY_MS);
    const [row]: { made: number }[] = await this.tx.system((m) =>
      m.query(`SELECT hearth_telemetry_partitions($1::date, $2::date) AS made`, [day(from), day(to)]),
    );
    return row.made;
  }

  /** One pass at time `now`, unless another replica did one less than an interval ago (then null). */
  async run(now: Date, force = false): Promise<RetentionPass | null> {
    const interval = this.config.telemetry.retentionIntervalSeconds;
    const claimed = await this.tx.system(async (m) => {
      const [rows]: [unknown[], number] = await m.query(
        `UPDATE telemetry_tasks SET last_run_at = $1
          WHERE name = 'retention'
            AND ($3::boolean OR last_run_at IS NULL OR last_run_at <= $1::timestamptz - make_interval(secs => $2))
          RETURNING name`,
        [now, interval * 0.9, force],
      );
      return rows.length > 0;
    });
    if (!claimed) return null;
    const days = this.config.telemetry.retentionDays;
    const partitionsMade = await this.ensurePartitions(now);
    let partitionsDropped = 0;
    for (const [table, keep] of [
      ['telemetry_samples', days.raw],
      ['telemetry_host_1m', days.minute],
      ['telemetry_gpu_1m', days.minute],
    ] as const) {
      const before = day(new Date(now.getTime() - keep * DAY_MS));
      const [row]: { dropped: number }[] = await this.tx.system((m) =>
        m.query(`SELECT hearth_telemetry_drop_partitions($1, $2::date) AS dropped`, [table, before]),
      );
      partitionsDropped += row.dropped;
    }
    const hourCutoff = new Date(now.getTime() - days.hour * DAY_MS);
    let hourRowsDeleted = 0;
    for (const table of ['telemetry_gpu_1h', 'telemetry_host_1h']) {
      for (let i = 0; i < MAX_DELETE_BATCHES; i++) {
        const deleted = await this.tx.system(async (m) => {
          const [, count]: [unknown[], number] = await m.query(
            `DELETE FROM ${table} WHERE ctid IN (SELECT ctid FROM ${table} WHERE bucket < $1 LIMIT $2)`,
            [hourCutoff, DELETE_BATCH],
          );
          return count;
        });
        hourRowsDeleted += deleted;
        if (deleted < DELETE_BATCH) break;
      }
    }
    const pass = { partitionsMade, partitionsDropped, hourRowsDeleted };
    if (partitionsMade || partitionsDropped || hourRowsDeleted)
      this.log.info(pass, 'telemetry retention pass');
    return pass;
  }
}
