/**
 * Telemetry across a NATS restart: while nats-server is down the agent keeps sampling into its
 * buffer; once it is back the agent backfills in order and the control plane stores every sample.
 * Nothing is lost below the buffer bound: one sample a second, no gap, no drop reported. The test runs
 * its own nats-server so it can stop it; JetStream state survives the restart on disk.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  query,
  startAgent,
  startControlPlane,
  waitFor,
  type ControlPlane,
  type TestAgent,
  type TestDatabase,
} from '@hearth/testing';
import { startNatsServer, type RunningNatsServer } from '../src/platform/messaging/nats-server.js';

const dir = mkdtempSync(join(tmpdir(), 'hearth-telemetry-restart-'));
let nats: RunningNatsServer;
let db: TestDatabase;
let cp: ControlPlane;
let agent: TestAgent;

const samples = () =>
  query<{ at: Date; dropped_before: number }>(
    db.adminUrl,
    `SELECT at, dropped_before FROM telemetry_samples WHERE agent_id = $1 ORDER BY at`,
    [agent.id],
  );

beforeAll(async () => {
  nats = await startNatsServer({ port: 0, host: '127.0.0.1', dir });
  db = await createTestDatabase();
  cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL: nats.url, TELEMETRY_FLUSH_MS: '50' });
  const org = await createOrganization(db.appUrl, 'Flaky Telemetry');
  const api = new GraphQLClient(cp.graphqlUrl, org.adminToken);
  const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
    `mutation { createJoinToken { token } }`,
  );
  agent = await startAgent(cp.url, createJoinToken.token, {
    args: ['--telemetry-interval', '1', '--telemetry-buffer', '600'],
  });
});

afterAll(async () => {
  await agent?.proc.stop();
  await cp?.stop();
  await nats?.stop();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('telemetry across a NATS restart', () => {
  it('buffers while NATS is down and backfills in order: no sample lost, none dropped', async () => {
    await waitFor(async () => (await samples()).length >= 3, { what: 'samples flowing' });

    await nats.stop();
    const down = Date.now();
    await new Promise((r) => setTimeout(r, 6000));
    nats = await startNatsServer({ port: nats.port, host: '127.0.0.1', dir });
    const up = Date.now();

    // Caught up: samples taken well after the restart are stored.
    await waitFor(async () => (await samples()).some((s) => new Date(s.at).getTime() > up + 3000), {
      what: 'samples after the restart',
      timeoutMs: 40_000,
    });
    const rows = await samples();
    const times = rows.map((s) => new Date(s.at).getTime());
    const during = times.filter((t) => t > down + 500 && t < up - 500);
    expect(during.length).toBeGreaterThanOrEqual(4);
    // One a second, every second: the largest gap is one interval (plus scheduling jitter).
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    expect(Math.max(...gaps)).toBeLessThan(1500);
    expect(rows.reduce((n, s) => n + s.dropped_before, 0)).toBe(0);
    expect(
      agent.proc.lines.some((l) => l.includes('telemetry not acknowledged; buffering and retrying')),
    ).toBe(true);
  });
});
