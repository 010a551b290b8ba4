/**
 * Idle detection with a controllable clock: the rollups and the detector run at times the test
 * chooses, against a real Postgres, over samples written as an agent would have sent them; nobody
 * waits 30 minutes. A job holding GPUs that stay under the threshold for the whole window gets an
 * alert (audited as the system); busy again resolves it; with the CANCEL policy the job is cancelled
 * (and the cancel retried until it goes through).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import type { DataSource } from 'typeorm';
import { createOrganization, createTestDatabase, query, type TestDatabase } from '@hearth/testing';
import { loadConfig } from '../src/config/config.js';
import { IdleDetector, type IdleCanceller } from '../src/modules/telemetry/idle-detector.service.js';
import { TelemetryRetention } from '../src/modules/telemetry/retention.service.js';
import { TelemetryRollups } from '../src/modules/telemetry/rollups.service.js';
import { AuditService } from '../src/platform/audit/audit.service.js';
import { createDataSource } from '../src/platform/database/data-source.js';
import { Transactions } from '../src/platform/tenancy/transactions.js';
import type { Principal } from '../src/platform/auth/principal.js';
import { UsageReportService } from '../src/modules/telemetry/usage-report.service.js';

const MINUTE = 60_000;
const STEP = 10_000;

let db: TestDatabase;
let ds: DataSource;
let tenant: string;
let user: string;
let agent: string;
let rollups: TelemetryRollups;
let retention: TelemetryRetention;
let detector: IdleDetector;
const cancels: string[] = [];
let failNextCancel = false;
/** The test's clock: three hours ago, on the hour (inside raw retention, whatever the real date). */
const F0 = Math.floor(Date.now() / (60 * MINUTE)) * 60 * MINUTE - 3 * 60 * MINUTE;
/** Where each job's samples have been written up to. */
const written = new Map<string, number>();

const canceller: IdleCanceller = {
  cancelIdle(_tenantId, jobId) {
    if (failNextCancel) {
      failNextCancel = false;
      return Promise.reject(new Error('the database went away'));
    }
    cancels.push(jobId);
    return Promise.resolve(true);
  },
};

async function job(startedAt: number, gpus = 2): Promise<string> {
  const id = randomUUID();
  await query(
    db.adminUrl,
    `INSERT INTO jobs (id, tenant_id, kind, command, timeout_seconds, max_attempts, state, agent_id, created_by, started_at, gpus)
     VALUES ($1, $2, 'COMMAND', '["train.py"]', 86400, 1, 'RUNNING', $3, $4, $5, $6)`,
    [id, tenant, agent, user, new Date(startedAt), gpus],
  );
  written.set(id, startedAt);
  return id;
}

/** The job's two GPUs at `util` % from where its samples stopped until `until`, every 10 s. */
async function samples(jobId: string, gpuBase: number, until: number, util: number): Promise<void> {
  const from = written.get(jobId)!;
  const ats: Date[] = [];
  for (let t = from; t < until; t += STEP) ats.push(new Date(t));
  written.set(jobId, until);
  await query(
    db.adminUrl,
    `INSERT INTO telemetry_samples (tenant_id, agent_id, at, interval_s, gpu, gpu_job_id, gpu_util_pct, gpu_power_w)
     SELECT $1, $2, at, 10, ARRAY[$3::int2, $3::int2 + 1], ARRAY[$4::uuid, $4::uuid], ARRAY[$5::real, $5::real],
            ARRAY[90::real, 90::real]
       FROM unnest($6::timestamptz[]) at
     ON CONFLICT (agent_id, at) DO UPDATE SET gpu = telemetry_samples.gpu || excluded.gpu,
            gpu_job_id = telemetry_samples.gpu_job_id || excluded.gpu_job_id,
            gpu_util_pct = telemetry_samples.gpu_util_pct || excluded.gpu_util_pct,
            gpu_power_w = telemetry_samples.gpu_power_w || excluded.gpu_power_w`,
    [tenant, agent, gpuBase, jobId, util, ats],
  );
}

/** Everything the periodic work does at time `at`: rollups until caught up, then one idle pass. */
async function tick(at: number) {
  for (let i = 0; i < 20; i++) {
    const pass = await rollups.run(new Date(at));
    if (!pass || pass.to.getTime() >= at - 2 * MINUTE) break;
  }
  return detector.run(new Date(at));
}

const alerts = (jobId: string) =>
  query<{
    state: string;
    action: string;
    threshold_pct: number;
    window_minutes: number;
    max_util_pct: number;
    idle_since: Date;
    resolution: string | null;
    cancel_requested_at: Date | null;
  }>(db.adminUrl, `SELECT * FROM telemetry_idle_alerts WHERE job_id = $1 ORDER BY raised_at`, [jobId]);

beforeAll(async () => {
  db = await createTestDatabase();
  tenant = (await createOrganization(db.appUrl, 'Idle Co')).organizationId;
  [{ id: user }] = await query<{ id: string }>(db.adminUrl, `SELECT id FROM users WHERE tenant_id = $1`, [
    tenant,
  ]);
  [{ id: agent }] = await query<{ id: string }>(
    db.adminUrl,
    `INSERT INTO agents (id, tenant_id, public_key, hostname, os, arch, cpus, memory_bytes, agent_version)
     VALUES (gen_random_uuid(), $1, 'U' || md5(random()::text), 'gpu-box', 'Linux', 'x64', 64, 1, 'test') RETURNING id`,
    [tenant],
  );
  ds = await createDataSource(db.appUrl, { poolSize: 2 }).initialize();
  const tx = new Transactions(ds);
  const config = loadConfig({ TELEMETRY_ROLLUP_SETTLE_SECONDS: '60' });
  rollups = new TelemetryRollups(config, tx);
  detector = new IdleDetector(pino({ level: 'silent' }), tx, new AuditService(tx), canceller);
  retention = new TelemetryRetention(config, pino({ level: 'silent' }), tx);
});

afterAll(async () => {
  await ds?.destroy();
  await db?.drop();
});

describe('idle detection (controllable clock)', () => {
  let idle: string;
  let busy: string;
  let silent: string;

  it('raises nothing before a held-but-idle job has been idle for the whole window', async () => {
    idle = await job(F0);
    busy = await job(F0);
    silent = await job(F0);
    for (let t = F0 + 5 * MINUTE; t <= F0 + 30 * MINUTE; t += 5 * MINUTE) {
      await samples(idle, 0, t, 1.5);
      await samples(busy, 2, t, 85);
      if (t <= F0 + 10 * MINUTE) await samples(silent, 4, t, 0); // then its agent stops reporting
      const pass = await tick(t);
      expect(pass?.raised).toEqual([]);
    }
  });

  it('raises one alert once the window is covered, audited as the system', async () => {
    await samples(idle, 0, F0 + 35 * MINUTE, 1.5);
    await samples(busy, 2, F0 + 35 * MINUTE, 85);
    const pass = await tick(F0 + 35 * MINUTE);
    expect(pass?.raised.map((r) => r.jobId)).toEqual([idle]);
    expect(await alerts(idle)).toEqual([
      expect.objectContaining({
        state: 'OPEN',
        action: 'NOTIFY',
        threshold_pct: 5,
        window_minutes: 30,
        max_util_pct: 1.5,
        cancel_requested_at: null,
      }),
    ]);
    // The window is the 30 rolled-up minutes before the rollup watermark (35 min - 1 min settle).
    expect(new Date((await alerts(idle))[0].idle_since).getTime()).toBe(F0 + 4 * MINUTE);
    expect(await alerts(busy)).toEqual([]);
    expect(await alerts(silent)).toEqual([]);
    const audit = await query<{ action: string; actor_type: string; target_id: string }>(
      db.adminUrl,
      `SELECT action, actor_type, target_id FROM audit_events WHERE action = 'telemetry.idle_alert'`,
    );
    expect(audit).toEqual([{ action: 'telemetry.idle_alert', actor_type: 'system', target_id: idle }]);
    expect(cancels).toEqual([]);
    // Another pass raises no second alert for the same job.
    expect((await tick(F0 + 36 * MINUTE))?.raised).toEqual([]);
    expect(await alerts(idle)).toHaveLength(1);
  });

  it('resolves the alert when the GPUs get busy again', async () => {
    await samples(idle, 0, F0 + 45 * MINUTE, 60);
    const pass = await tick(F0 + 45 * MINUTE);
    expect(pass?.resolved).toBe(1);
    expect(await alerts(idle)).toEqual([
      expect.objectContaining({ state: 'RESOLVED', resolution: 'GPUs busy again' }),
    ]);
  });

  it('with the CANCEL policy, cancels the idle job, retrying until the cancel goes through', async () => {
    await query(
      db.adminUrl,
      `INSERT INTO telemetry_settings (tenant_id, idle_threshold_pct, idle_window_minutes, idle_action)
       VALUES ($1, 10, 10, 'CANCEL')`,
      [tenant],
    );
    const start = F0 + 45 * MINUTE;
    const stuck = await job(start);
    await samples(stuck, 6, start + 8 * MINUTE, 9); // under the new 10 % threshold
    expect((await tick(start + 8 * MINUTE))?.raised).toEqual([]);
    await samples(stuck, 6, start + 12 * MINUTE, 9);
    failNextCancel = true;
    const first = await tick(start + 12 * MINUTE);
    expect(first?.raised).toEqual([expect.objectContaining({ jobId: stuck, action: 'CANCEL' })]);
    expect(first?.cancelled).toEqual([]);
    expect((await alerts(stuck))[0].cancel_requested_at).toBeNull();
    const retry = await tick(start + 13 * MINUTE);
    expect(retry?.cancelled).toEqual([stuck]);
    expect(cancels).toEqual([stuck]);
    expect((await alerts(stuck))[0]).toMatchObject({
      action: 'CANCEL',
      threshold_pct: 10,
      window_minutes: 10,
    });
    expect((await alerts(stuck))[0].cancel_requested_at).not.toBeNull();
    expect((await tick(start + 14 * MINUTE))?.cancelled).toEqual([]);
  });

  it('resolves an alert whose job has ended', async () => {
    const [open] = await query<{ job_id: string }>(
      db.adminUrl,
      `SELECT job_id FROM telemetry_idle_alerts WHERE state = 'OPEN'`,
    );
    await query(db.adminUrl, `UPDATE jobs SET state = 'CANCELLED', finished_at = now() WHERE id = $1`, [
      open.job_id,
    ]);
    expect((await tick(F0 + 60 * MINUTE))?.resolved).toBe(1);
    expect(await alerts(open.job_id)).toEqual([
      expect.objectContaining({ state: 'RESOLVED', resolution: 'job ended' }),
    ]);
  });
});

describe('usage report ahead of the rollups (controllable clock)', () => {
  it('sums minutes the rollups have not reached from the raw samples, equal to their integral', async () => {
    const w0 = F0 + 70 * MINUTE;
    const late = await job(w0);
    await samples(late, 0, w0 + 30 * MINUTE, 3); // two GPUs at 3 % (idle at the default 5 %), 90 W each
    await tick(w0 + 15 * MINUTE); // rolled up to a minute before that, no further
    const [{ done_until }] = await query<{ done_until: Date }>(
      db.adminUrl,
      `SELECT done_until FROM telemetry_tasks WHERE name = 'rollup'`,
    );
    expect(new Date(done_until).getTime()).toBe(w0 + 14 * MINUTE);

    const reports = new UsageReportService(new Transactions(ds));
    const principal = {
      tenantId: tenant,
      grants: [{ permission: 'telemetry:read', projectId: null }],
    } as unknown as Principal;
    const report = await reports.report(principal, new Date(w0), new Date(w0 + 30 * MINUTE));
    // 2 GPUs × 30 minutes, every sample below the threshold, 90 W each.
    expect(report.totals.gpuHours).toBeCloseTo(1, 9);
    expect(report.totals.idleGpuHours).toBeCloseTo(1, 9);
    expect(report.rows.map((r) => r.energyKwh)).toEqual([expect.closeTo((2 * 90 * 1800) / 3.6e6, 9)]);
    // The part before the watermark came from the rollups, the rest from raw: the same as all raw.
    const rolled = await reports.report(principal, new Date(w0), new Date(w0 + 14 * MINUTE));
    expect(rolled.totals.gpuHours).toBeCloseTo((2 * 14) / 60, 9);
  });
});

describe('retention (controllable clock)', () => {
  const DAY = 24 * 60 * MINUTE;
  const partitions = async (table: string) =>
    (
      await query<{ name: string }>(
        db.adminUrl,
        `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = $1::regclass ORDER BY 1`,
        [table],
      )
    ).map((r) => r.name.slice(-8));
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10).replaceAll('-', '');

  it('makes partitions ahead, drops raw days after 7 days and 1-minute days after 90, deletes old hours', async () => {
    const today = Math.floor(Date.now() / DAY) * DAY;
    const later = today + 10 * DAY + 12 * 60 * MINUTE;
    await query(
      db.adminUrl,
      `INSERT INTO telemetry_host_1h (tenant_id, agent_id, bucket, samples, seconds, cpu_seconds, cpu_weighted,
              mem_seconds, mem_weighted, disk_read_bytes, disk_write_bytes, net_rx_bytes, net_tx_bytes, dropped)
       VALUES ($1, $2, $3, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0), ($1, $2, $4, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0)`,
      [tenant, agent, new Date(later - 731 * DAY), new Date(later - 729 * DAY)],
    );
    const pass = await retention.run(new Date(later), true);
    expect(pass?.hourRowsDeleted).toBe(1);
    const raw = await partitions('telemetry_samples');
    // Raw: the days of the last week (and a few ahead) are there, older ones are gone.
    expect(raw[0]).toBe(day(later - 7 * DAY));
    expect(raw).toContain(day(later + 3 * DAY - DAY));
    expect(raw).not.toContain(day(today));
    // 1-minute rollups keep 90 days: today's partition is still there.
    expect(await partitions('telemetry_gpu_1m')).toContain(day(today));
    // Another replica within the interval does nothing; the pass is idempotent anyway.
    expect(await retention.run(new Date(later + MINUTE))).toBeNull();
    expect((await retention.run(new Date(later), true))?.partitionsDropped).toBe(0);
  });
});
