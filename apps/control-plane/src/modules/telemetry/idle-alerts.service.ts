/** Reading idle alerts: newest first, only those of jobs in projects the caller reads telemetry of. */
import { Inject, Injectable } from '@nestjs/common';
import { scopeOf } from '../../platform/access/grants.js';
import type { Principal } from '../../platform/auth/principal.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { TelemetryRangeError } from './telemetry.errors.js';
import type { IdleAlertModel, IdleAlertState } from './usage.model.js';

interface AlertRow {
  id: string;
  job_id: string;
  agent_id: string | null;
  project_id: string | null;
  gpus: number;
  threshold_pct: number;
  window_minutes: number;
  max_util_pct: number | null;
  mean_util_pct: number | null;
  idle_since: Date;
  raised_at: Date;
  action: IdleAlertModel['action'];
  state: IdleAlertModel['state'];
  resolved_at: Date | null;
  resolution: string | null;
  cancel_requested_at: Date | null;
}

@Injectable()
export class IdleAlertsService {
  constructor(@Inject(Transactions) private readonly tx: Transactions) {}

  async list(p: Principal, state: IdleAlertState | null, first: number): Promise<IdleAlertModel[]> {
    if (!Number.isInteger(first) || first < 1 || first > 500)
      throw new TelemetryRangeError('first must be between 1 and 500');
    const readable = scopeOf(p.grants, 'telemetry:read');
    const projects = readable === 'organization' ? null : [...readable];
    const rows: AlertRow[] = await this.tx.tenant(p.tenantId, (m) =>
      m.query(
        `SELECT * FROM telemetry_idle_alerts
          WHERE ($1::text IS NULL OR state = $1) AND ($2::uuid[] IS NULL OR project_id = ANY($2::uuid[]))
          ORDER BY raised_at DESC, id DESC LIMIT $3`,
        [state, projects, first],
      ),
    );
    return rows.map((r) => ({
      id: r.id,
      jobId: r.job_id,
      agentId: r.agent_id,
      projectId: r.project_id,
      gpus: r.gpus,
      thresholdPct: Number(r.threshold_pct),
      windowMinutes: r.window_minutes,
      maxUtilizationPct: r.max_util_pct === null ? null : Number(r.max_util_pct),
      meanUtilizationPct: r.mean_util_pct === null ? null : Number(r.mean_util_pct),
      idleSince: r.idle_since,
      raisedAt: r.raised_at,
      action: r.action,
      state: r.state,
      resolvedAt: r.resolved_at,
      resolution: r.resolution,
      cancelRequestedAt: r.cancel_requested_at,
    }));
  }
}
