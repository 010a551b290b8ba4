/**
 * Idle detection: a running job that holds GPUs, whose GPUs stayed below the organization's idle
 * threshold for its whole idle window, gets an idle alert (a row, audited as the system). With the
 * organization's action set to CANCEL the job is then cancelled through the jobs service's own path
 * (audited as the system too). Alerts resolve when the job ends or its GPUs get busy again.
 *
 * The window is judged on the job's current attempt alone: it starts after that attempt started, and
 * only readings from that attempt's agent count. Ingest charges a reading to a job only while an
 * attempt of it ran on the agent that sent it (and shortly after it ended), so neither readings an
 * agent dates outside its run nor those of an earlier attempt on another agent can make this run
 * look idle.
 *
 * It reads the 1-minute rollups up to the rollup watermark, so a window is judged on complete
 * minutes. Runs at an injected time (tests move it), under the `idle` task row (SKIP LOCKED): one
 * replica per pass. The cancels run after the alerts commit and are retried by later passes until
 * they are requested, so a failure between the two loses nothing.
 */
import { Inject, Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import type { EntityManager } from 'typeorm';
import type { Logger } from 'pino';
import { AuditService } from '../../platform/audit/audit.service.js';
import { LOGGER } from '../../platform/logging/logging.module.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { floorTo } from './clock.js';

/** Cancels a job as the system; false when it was not (any more) cancellable. */
export interface IdleCanceller {
  cancelIdle(tenantId: string, jobId: string): Promise<boolean>;
}
export const IDLE_CANCELLER = Symbol('IDLE_CANCELLER');

export interface IdlePass {
  raised: { alertId: string; jobId: string; tenantId: string; action: 'NOTIFY' | 'CANCEL' }[];
  resolved: number;
  cancelled: string[];
}

/** Share of a window's minutes that must have samples (a few may fall between samples). */
const COVERAGE = 0.9;
const SYSTEM = { type: 'system' as const, id: null };

@Injectable()
export class IdleDetector {
  constructor(
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(IDLE_CANCELLER) private readonly canceller: IdleCanceller,
  ) {}

  /** One pass at time `now`; null when another replica is doing one. */
  async run(now: Date): Promise<IdlePass | null> {
    const pass = await this.tx.system(async (m) => {
      const [task]: unknown[] = await m.query(
        `SELECT 1 FROM telemetry_tasks WHERE name = 'idle' FOR UPDATE SKIP LOCKED`,
      );
      if (!task) return null;
      const [rollup]: { done_until: Date | null }[] = await m.query(
        `SELECT done_until FROM telemetry_tasks WHERE name = 'rollup'`,
      );
      if (!rollup.done_until) return { raised: [], resolved: 0 };
      const end = new Date(Math.min(floorTo(now, 'minute').getTime(), rollup.done_until.getTime()));
      const resolved = await this.resolve(m, now, end);
      const raised = await this.raise(m, now, end);
      await m.query(`UPDATE telemetry_tasks SET last_run_at = $1 WHERE name = 'idle'`, [now]);
      return { raised, resolved };
    });
    if (!pass) return null;
    const cancelled = await this.cancelPending();
    for (const r of pass.raised)
      this.log.info({ tenantId: r.tenantId, jobId: r.jobId, action: r.action }, 'idle GPUs: alert raised');
    return { ...pass, cancelled };
  }

  private async raise(m: EntityManager, now: Date, end: Date): Promise<IdlePass['raised']> {
    const idle: {
      id: string;
      tenant_id: string;
      project_id: string | null;
      agent_id: string | null;
      threshold: number;
      window_minutes: number;
      action: 'NOTIFY' | 'CANCEL';
      max_util: number;
      mean_util: number | null;
      gpus_seen: string;
    }[] = await m.query(
      `SELECT c.*, w.max_util, w.mean_util, w.gpus_seen
         FROM (SELECT j.id, j.tenant_id, j.project_id, j.agent_id, j.started_at,
                      r.agent_id AS run_agent, r.started_at AS run_started,
                      coalesce(st.idle_threshold_pct, 5) AS threshold,
                      coalesce(st.idle_window_minutes, 30) AS window_minutes,
                      coalesce(st.idle_action, 'NOTIFY') AS action
                 FROM jobs j JOIN job_attempts r ON r.id = j.current_attempt_id AND r.state = 'RUNNING'
                      LEFT JOIN telemetry_settings st ON st.tenant_id = j.tenant_id
                WHERE j.state = 'RUNNING' AND j.gpus > 0 AND j.cancel_requested_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM telemetry_idle_alerts a WHERE a.job_id = j.id AND a.state = 'OPEN')
              ) c
        CROSS JOIN LATERAL (
              SELECT count(DISTINCT g.bucket) AS minutes, max(g.util_max) AS max_util,
                     sum(g.util_weighted) / nullif(sum(g.util_seconds), 0) AS mean_util,
                     count(DISTINCT (g.agent_id, g.gpu)) AS gpus_seen
                FROM telemetry_gpu_1m g
               WHERE g.job_id = c.id AND g.agent_id = c.run_agent
                 AND g.bucket >= $1::timestamptz - make_interval(mins => c.window_minutes) AND g.bucket < $1) w
        WHERE c.started_at <= $1::timestamptz - make_interval(mins => c.window_minutes)
          AND c.run_started <= $1::timestamptz - make_interval(mins => c.window_minutes)
          AND w.minutes >= greatest(1, floor(c.window_minutes * ${COVERAGE}))
          AND w.max_util IS NOT NULL AND w.max_util < c.threshold`,
      [end],
    );
    const raised: IdlePass['raised'] = [];
    for (const j of idle) {
      const alertId = uuidv7();
      const since = new Date(end.getTime() - j.window_minutes * 60_000);
      const [inserted]: unknown[] = await m.query(
        `INSERT INTO telemetry_idle_alerts (id, tenant_id, job_id, agent_id, project_id, gpus, threshold_pct,
                window_minutes, max_util_pct, mean_util_pct, idle_since, raised_at, action)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (job_id) WHERE state = 'OPEN' DO NOTHING RETURNING id`,
        [
          alertId,
          j.tenant_id,
          j.id,
          j.agent_id,
          j.project_id,
          Number(j.gpus_seen),
          j.threshold,
          j.window_minutes,
          j.max_util,
          j.mean_util,
          since,
          now,
          j.action,
        ],
      );
      if (!inserted) continue;
      await this.audit.record(m, j.tenant_id, SYSTEM, {
        action: 'telemetry.idle_alert',
        target: { type: 'job', id: j.id },
        changes: {
          alertId,
          thresholdPct: j.threshold,
          windowMinutes: j.window_minutes,
          maxUtilizationPct: j.max_util,
          action: j.action,
        },
      });
      raised.push({ alertId, jobId: j.id, tenantId: j.tenant_id, action: j.action });
    }
    return raised;
  }

  /** Open alerts whose job ended, or whose GPUs went above the threshold in the last two minutes. */
  private async resolve(m: EntityManager, now: Date, end: Date): Promise<number> {
    const [, ended]: [unknown[], number] = await m.query(
      `UPDATE telemetry_idle_alerts a SET state = 'RESOLVED', resolved_at = $1, resolution = 'job ended'
         FROM jobs j
        WHERE a.state = 'OPEN' AND j.id = a.job_id
          AND j.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')`,
      [now],
    );
    const [, busy]: [unknown[], number] = await m.query(
      `UPDATE telemetry_idle_alerts a SET state = 'RESOLVED', resolved_at = $1, resolution = 'GPUs busy again'
        WHERE a.state = 'OPEN' AND EXISTS (
          SELECT 1 FROM telemetry_gpu_1m g
           WHERE g.job_id = a.job_id AND g.bucket >= $2::timestamptz - interval '2 minutes' AND g.bucket < $2
             AND g.util_max >= a.threshold_pct)`,
      [now, end],
    );
    return ended + busy;
  }

  /** Cancels the jobs of open CANCEL alerts not yet cancelled (this pass's and earlier failures). */
  private async cancelPending(): Promise<string[]> {
    const pending: { id: string; tenant_id: string; job_id: string }[] = await this.tx.system((m) =>
      m.query(
        `SELECT id, tenant_id, job_id FROM telemetry_idle_alerts
          WHERE state = 'OPEN' AND action = 'CANCEL' AND cancel_requested_at IS NULL LIMIT 100`,
      ),
    );
    const cancelled: string[] = [];
    for (const a of pending) {
      try {
        if (await this.canceller.cancelIdle(a.tenant_id, a.job_id)) cancelled.push(a.job_id);
        await this.tx.system((m) =>
          m.query(`UPDATE telemetry_idle_alerts SET cancel_requested_at = now() WHERE id = $1`, [a.id]),
        );
      } catch (err) {
        this.log.error({ err, jobId: a.job_id }, 'cancelling an idle job failed; will retry');
      }
    }
    return cancelled;
  }
}
