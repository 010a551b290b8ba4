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

/**
 * A job running since `startedAt`, as the dispatcher and the agent's claim leave it: its current
 * attempt RUNNING on the agent; `before` are earlier attempts that ended (on other agents, say).
 */
async function job(
  startedAt: number,
  {
    gpus = 2,
    on = { tenant, agent, user },
    before = [],
    runningSince = startedAt,
  }: {
    gpus?: number;
    on?: Owner;
    before?: { agent: string; from: number; until: number }[];
    runningSince?: number;
  } = {},
): Promise<string> {
  const id = randomUUID();
  const attempts = [
    ...before.map((a) => ({ ...a, state: 'LOST' })),
    { agent: on.agent, from: runningSince, until: null, state: 'RUNNING' },
  ];
  const ids = attempts.map(() => randomUUID());
  // One statement: the job names its current attempt, which names the job.
  await query(
    db.adminUrl,
    `WITH j AS (
       INSERT INTO jobs (id, tenant_id, kind, command, timeout_seconds, max_attempts, state, agent_id, created_by,
                         started_at, gpus, attempts, current_attempt_id)
       VALUES ($1, $2, 'COMMAND', '["train.py"]', 86400, 20, 'RUNNING', $3, $4, $5, $6, $7, $8) RETURNING id)
     INSERT INTO job_attempts (id, tenant_id, job_id, number, fencing_token, agent_id, state, lease_expires_at,
                               created_at, started_at, finished_at)
     SELECT a.id, $2, j.id, a.n, a.n, a.agent, a.state, now() + interval '1 day', a.since, a.since, a.until
       FROM j, unnest($9::uuid[], $10::int[], $11::uuid[], $12::text[], $13::timestamptz[], $14::timestamptz[])
            AS a(id, n, agent, state, since, until)`,
    [
      id,
      on.tenant,
      on.agent,
      on.user,
      new Date(startedAt),
      gpus,
      attempts.length,
      ids.at(-1),
      ids,
      attempts.map((_, n) => n + 1),
      attempts.map((a) => a.agent),
      attempts.map((a) => a.state),
      attempts.map((a) => new Date(a.from)),
      attempts.map((a) => (a.until === null ? null : new Date(a.until))),
    ],
  );
  written.set(id, startedAt);
  return id;
}

interface Owner {
  tenant: string;
  agent: string;
  user: string;
}

/** An agent of the tenant, as enrolling leaves it. */
async function newAgent(tenantId: string): Promise<string> {
  const [{ id }] = await query<{ id: string }>(
    db.adminUrl,
    `INSERT INTO agents (id, tenant_id, public_key, hostname, os, arch, cpus, memory_bytes, agent_version)
     VALUES (gen_random_uuid(), $1, 'U' || md5(random()::text), 'gpu-box', 'Linux', 'x64', 64, 1, 'test') RETURNING id`,
    [tenantId],
  );
  return id;
}

/** Samples of one GPU reading each (at 100 W), as stored: straight into the table. */
async function readings(
  on: { tenant: string; agent: string },
  rows: { at: number; seconds: number; gpu: number; job: string | null; util: number }[],
): Promise<void> {
  await query(
    db.adminUrl,
    `INSERT INTO telemetry_samples (tenant_id, agent_id, at, interval_s, gpu, gpu_job_id, gpu_util_pct, gpu_power_w)
     SELECT $1, $2, r.at, r.s, ARRAY[r.g], ARRAY[r.j], ARRAY[r.u], ARRAY[100::real]
       FROM unnest($3::timestamptz[], $4::int2[], $5::int2[], $6::uuid[], $7::real[]) AS r(at, s, g, j, u)`,
    [
      on.tenant,
      on.agent,
      rows.map((r) => new Date(r.at)),
      rows.map((r) => r.seconds),
      rows.map((r) => r.gpu),
      rows.map((r) => r.job),
      rows.map((r) => r.util),
    ],
  );
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
  agent = await newAgent(tenant);
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

describe('time an agent did not spend (controllable clock; audit 2026-11-21, finding 4)', () => {
  /** Another organization (CANCEL after 10 idle minutes under 10 %), its agents X and Y. */
  let other: Owner;
  let agentX: string;
  const reportOf = (tenantId: string) => ({
    tenantId,
    grants: [{ permission: 'telemetry:read', projectId: null }],
  });

  beforeAll(async () => {
    const org = await createOrganization(db.appUrl, 'Idle Co 2');
    const [{ id: owner }] = await query<{ id: string }>(
      db.adminUrl,
      `SELECT id FROM users WHERE tenant_id = $1`,
      [org.organizationId],
    );
    other = { tenant: org.organizationId, agent: await newAgent(org.organizationId), user: owner };
    agentX = await newAgent(other.tenant);
    await query(
      db.adminUrl,
      `INSERT INTO telemetry_settings (tenant_id, idle_threshold_pct, idle_window_minutes, idle_action)
       VALUES ($1, 10, 10, 'CANCEL')`,
      [other.tenant],
    );
  });

  it('counts a GPU for at most 60 s a minute, in the report the same before and after the rollup', async () => {
    const m0 = F0 + 101 * MINUTE;
    const burst = await job(m0, { gpus: 1, on: other });
    // 20 readings 1 s apart that each stand for a minute (samples sent one a message, newest first,
    // find no earlier one to be measured against at ingest), and 10 of the same GPU held by no job.
    await readings(other, [
      ...Array.from({ length: 20 }, (_, k) => ({
        at: m0 + k * 1000,
        seconds: 60,
        gpu: 0,
        job: burst,
        util: 3,
      })),
      ...Array.from({ length: 10 }, (_, k) => ({
        at: m0 + 30_000 + k * 1000,
        seconds: 60,
        gpu: 0,
        job: null,
        util: 3,
      })),
    ]);
    const reports = new UsageReportService(new Transactions(ds));
    const principal = reportOf(other.tenant) as unknown as Principal;
    const [from, to] = [new Date(m0 - 5 * MINUTE), new Date(m0 + 5 * MINUTE)];
    const watermark = async () =>
      new Date(
        (
          await query<{ done_until: Date }>(
            db.adminUrl,
            `SELECT done_until FROM telemetry_tasks WHERE name = 'rollup'`,
          )
        )[0].done_until,
      ).getTime();
    // 30 readings of 60 s in the GPU's minute: 60 s in all, of which the job's readings hold 2/3.
    const want = (r: Awaited<ReturnType<UsageReportService['report']>>) => {
      expect(r.rows).toHaveLength(1);
      expect(r.totals.gpuHours * 3600).toBeCloseTo(40, 9);
      expect(r.totals.idleGpuHours * 3600).toBeCloseTo(40, 9);
      expect(r.totals.energyKwh).toBeCloseTo((100 * 40) / 3.6e6, 12);
    };
    expect(await watermark()).toBeLessThanOrEqual(from.getTime()); // all from the raw samples
    want(await reports.report(principal, from, to));
    await tick(m0 + 3 * MINUTE);
    expect(await watermark()).toBeGreaterThan(m0); // all from the rollups
    want(await reports.report(principal, from, to));
    const minute = await query<{ job_id: string | null; seconds: number; energy_j: number }>(
      db.adminUrl,
      `SELECT job_id, seconds, energy_j FROM telemetry_gpu_1m WHERE agent_id = $1 ORDER BY job_id NULLS LAST`,
      [other.agent],
    );
    expect(minute).toEqual([
      { job_id: burst, seconds: expect.closeTo(40, 9), energy_j: expect.closeTo(4000, 6) },
      { job_id: null, seconds: expect.closeTo(20, 9), energy_j: expect.closeTo(2000, 6) },
    ]);
    // The host's minute too.
    const [host] = await query<{ samples: number; seconds: number }>(
      db.adminUrl,
      `SELECT samples, seconds FROM telemetry_host_1m WHERE agent_id = $1`,
      [other.agent],
    );
    expect(host).toEqual({ samples: 30, seconds: expect.closeTo(60, 9) });
  });

  it('judges a job on its current attempt: an earlier attempt’s idle readings do not get it cancelled', async () => {
    const s0 = F0 + 104 * MINUTE;
    // It ran on X for 12 minutes (X lost), then on Y from half a minute later.
    const moved = await job(s0, {
      gpus: 1,
      on: other,
      before: [{ agent: agentX, from: s0, until: s0 + 12 * MINUTE }],
      runningSince: s0 + 12.5 * MINUTE,
    });
    const idleOn = (agentId: string, from: number, until: number) =>
      readings(
        { tenant: other.tenant, agent: agentId },
        Array.from({ length: (until - from) / STEP }, (_, k) => ({
          at: from + k * STEP,
          seconds: 10,
          gpu: 0,
          job: moved,
          util: 0,
        })),
      );
    // X's GPU idled for the job all its run: a whole window, but not of this run.
    await idleOn(agentX, s0, s0 + 12 * MINUTE);
    const first = await tick(s0 + 13 * MINUTE);
    expect(first?.raised).toEqual([]);
    expect(await alerts(moved)).toEqual([]);
    // Y's GPU idles for a whole window of its own: that is what gets the job cancelled.
    await idleOn(other.agent, s0 + 12.5 * MINUTE, s0 + 24 * MINUTE);
    const second = await tick(s0 + 24 * MINUTE);
    expect(second?.raised).toEqual([expect.objectContaining({ jobId: moved, action: 'CANCEL' })]);
    expect(second?.cancelled).toEqual([moved]);
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
