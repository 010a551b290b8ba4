/**
 * The organization's telemetry settings: the idle policy (threshold, window, action) and the price
 * per GPU-hour of each GPU model. Read with telemetry:read; changed with telemetry:manage, each change
 * audited in its own transaction.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { actorOf, AuditService } from '../../platform/audit/audit.service.js';
import type { Principal } from '../../platform/auth/principal.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import {
  IdleAction,
  type SetGpuPriceInput,
  type TelemetrySettings,
  type UpdateTelemetrySettingsInput,
} from './usage.model.js';

interface SettingsRow {
  idle_threshold_pct: number;
  idle_window_minutes: number;
  idle_action: IdleAction;
  currency: string;
  gpu_prices: Record<string, number>;
}

const DEFAULTS: SettingsRow = {
  idle_threshold_pct: 5,
  idle_window_minutes: 30,
  idle_action: IdleAction.NOTIFY,
  currency: 'USD',
  gpu_prices: {},
};

@Injectable()
export class TelemetrySettingsService {
  constructor(
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(AuditService) private readonly audit: AuditService,
  ) {}

  get(p: Principal): Promise<TelemetrySettings> {
    return this.tx.tenant(p.tenantId, async (m) => toModel(await readSettings(m)));
  }

  async update(p: Principal, input: UpdateTelemetrySettingsInput): Promise<TelemetrySettings> {
    return this.tx.tenant(p.tenantId, async (m) => {
      const before = await readSettings(m);
      const changes = Object.fromEntries(
        Object.entries({
          idle_threshold_pct: input.idleThresholdPct,
          idle_window_minutes: input.idleWindowMinutes,
          idle_action: input.idleAction,
          currency: input.currency,
        }).filter(([, v]) => v !== undefined && v !== null),
      );
      const after = await upsert(m, p.tenantId, { ...before, ...changes });
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'telemetry.settings.update',
        target: { type: 'organization', id: p.tenantId },
        changes: {
          before: { ...before, gpu_prices: undefined },
          after: { ...after, gpu_prices: undefined },
        },
      });
      return toModel(after);
    });
  }

  async setGpuPrice(p: Principal, input: SetGpuPriceInput): Promise<TelemetrySettings> {
    const { model } = input; // trimmed by the input type
    return this.tx.tenant(p.tenantId, async (m) => {
      const before = await readSettings(m);
      const prices = { ...before.gpu_prices };
      if (input.pricePerGpuHour === null || input.pricePerGpuHour === undefined) delete prices[model];
      else prices[model] = input.pricePerGpuHour;
      const after = await upsert(m, p.tenantId, { ...before, gpu_prices: prices });
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'telemetry.gpu_price.set',
        target: { type: 'organization', id: p.tenantId },
        changes: {
          model,
          before: before.gpu_prices[model] ?? null,
          after: prices[model] ?? null,
          currency: after.currency,
        },
      });
      return toModel(after);
    });
  }
}

/** The tenant's settings, or the defaults (in the caller's tenant transaction). */
export async function readSettings(m: EntityManager): Promise<SettingsRow> {
  const [row]: SettingsRow[] = await m.query(
    `SELECT idle_threshold_pct, idle_window_minutes, idle_action, currency, gpu_prices FROM telemetry_settings`,
  );
  return row ? { ...row, idle_threshold_pct: Number(row.idle_threshold_pct) } : { ...DEFAULTS };
}

async function upsert(m: EntityManager, tenantId: string, s: SettingsRow): Promise<SettingsRow> {
  const [row]: SettingsRow[] = await m.query(
    `INSERT INTO telemetry_settings (tenant_id, idle_threshold_pct, idle_window_minutes, idle_action, currency, gpu_prices)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (tenant_id) DO UPDATE SET idle_threshold_pct = excluded.idle_threshold_pct,
            idle_window_minutes = excluded.idle_window_minutes, idle_action = excluded.idle_action,
            currency = excluded.currency, gpu_prices = excluded.gpu_prices, updated_at = now()
     RETURNING idle_threshold_pct, idle_window_minutes, idle_action, currency, gpu_prices`,
    [
      tenantId,
      s.idle_threshold_pct,
      s.idle_window_minutes,
      s.idle_action,
      s.currency,
      JSON.stringify(s.gpu_prices),
    ],
  );
  return { ...row, idle_threshold_pct: Number(row.idle_threshold_pct) };
}

function toModel(s: SettingsRow): TelemetrySettings {
  return {
    idleThresholdPct: s.idle_threshold_pct,
    idleWindowMinutes: s.idle_window_minutes,
    idleAction: s.idle_action,
    currency: s.currency,
    gpuPrices: Object.entries(s.gpu_prices)
      .map(([model, pricePerGpuHour]) => ({ model, pricePerGpuHour }))
      .sort((a, b) => a.model.localeCompare(b.model)),
  };
}
