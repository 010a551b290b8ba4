/**
 * Idle detection end to end: the control plane, a real agent whose PATH has a fake nvidia-smi (the
 * GPU is the one edge we fake; it speaks the real tool's output format), real Postgres and a
 * nats-server of its own. A job that holds a GPU it does not use is cancelled with the CANCEL
 * policy. The detector judges whole minutes of rolled-up telemetry, so this test waits one to two
 * minutes of wall-clock time doing little: `npm test` runs it beside the unit tests (scripts/test.sh),
 * which is why it has its own nats-server (nothing shared with other tests' streams).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  startAgent,
  startControlPlane,
  submitCommand,
  waitForAgentGpus,
  waitForJob,
  writeFakeNvidiaSmi,
  type ControlPlane,
  type TestAgent,
  type TestDatabase,
} from '@hearth/testing';
import { startNatsServer, type RunningNatsServer } from '../src/platform/messaging/nats-server.js';

const dir = mkdtempSync(join(tmpdir(), 'hearth-idle-e2e-'));
let nats: RunningNatsServer;
let db: TestDatabase;
let cp: ControlPlane;
let agent: TestAgent;
let api: GraphQLClient;

const submit = (command: string[], gpus: number) => submitCommand(api, command, gpus);

beforeAll(async () => {
  const gpus = writeFakeNvidiaSmi(dir, { gpus: 2 });
  nats = await startNatsServer({ port: 0, host: '127.0.0.1', dir: join(dir, 'nats') });
  db = await createTestDatabase();
  cp = await startControlPlane({
    DATABASE_URL: db.appUrl,
    NATS_URL: nats.url,
    TELEMETRY_FLUSH_MS: '50',
    TELEMETRY_ROLLUP_INTERVAL_SECONDS: '1',
    TELEMETRY_ROLLUP_SETTLE_SECONDS: '2',
    TELEMETRY_IDLE_INTERVAL_SECONDS: '2',
    CANCEL_GRACE_SECONDS: '1',
  });
  api = new GraphQLClient(cp.graphqlUrl, (await createOrganization(db.appUrl, 'Idle Co')).adminToken);
  const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
    `mutation { createJoinToken { token } }`,
  );
  agent = await startAgent(cp.url, createJoinToken.token, {
    args: ['--telemetry-interval', '1'],
    env: { PATH: `${gpus.binDir}:${process.env.PATH}` },
  });
  await waitForAgentGpus(api, 2);
});

afterAll(async () => {
  await agent?.proc.stop();
  await cp?.stop();
  await db?.drop();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('idle detection on a real job', () => {
  it('cancels a job that holds a GPU it does not use, with the CANCEL policy, audited as the system', async () => {
    await api.ok(
      `mutation { updateTelemetrySettings(input: { idleWindowMinutes: 1, idleAction: CANCEL }) { idleAction } }`,
    );
    // `env -u` runs sleep without CUDA_VISIBLE_DEVICES: the GPU is held (assigned), but nothing uses it.
    const id = await submit(['env', '-u', 'CUDA_VISIBLE_DEVICES', 'sleep', '600'], 1);
    const cancelled = await waitForJob<{ state: string }>(
      api,
      id,
      ['CANCELLED', 'SUCCEEDED', 'FAILED'],
      'state',
      180_000,
    );
    expect(cancelled.state).toBe('CANCELLED');
    const { idleAlerts } = await api.ok<{
      idleAlerts: {
        jobId: string;
        action: string;
        gpus: number;
        maxUtilizationPct: number;
        cancelRequestedAt: string;
      }[];
    }>(`{ idleAlerts { jobId action gpus maxUtilizationPct cancelRequestedAt } }`);
    expect(idleAlerts).toEqual([
      expect.objectContaining({
        jobId: id,
        action: 'CANCEL',
        gpus: 1,
        maxUtilizationPct: 0,
        cancelRequestedAt: expect.any(String),
      }),
    ]);
    const { auditEvents } = await api.ok<{
      auditEvents: {
        edges: { node: { action: string; actor: { type: string }; target: { id: string } | null } }[];
      };
    }>(`{ auditEvents(first: 200) { edges { node { action actor { type } target { id } } } } }`);
    const about = auditEvents.edges.map((e) => e.node).filter((e) => e.target?.id === id);
    expect(about.map((e) => [e.action, e.actor.type]).sort()).toEqual([
      ['job.cancel', 'system'],
      ['job.submit', 'user'],
      ['telemetry.idle_alert', 'system'],
    ]);
  }, 200_000);
});
