/**
 * Jest globalSetup of the integration project: what its test files would otherwise share or repeat.
 *
 * - A nats-server per jest worker (JetStream on, no auth, a store of its own). Test files on one
 *   server run one after another, as they always did; files on different workers never share a
 *   stream or a durable consumer, so the suite can run on more than one worker. nats.ts gives each
 *   file its worker's server as SHARED_NATS_URL.
 * - A database migrated once with the real `hearth migrate`, which createTestDatabase copies
 *   (CREATE DATABASE … TEMPLATE, 0.08 s) instead of migrating each file's anew (0.75 s). Migrating
 *   it first also creates the cluster-wide roles before two workers could race to create them.
 *   migrations.test.ts still runs every migration up and down itself.
 *
 * Plain JavaScript: jest loads it before any transform. It uses the built control plane (the
 * integration tests need the build anyway: they start `hearth` from dist/).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export default async function setup(globalConfig) {
  const natsServerModule = path.join(ROOT, 'apps/control-plane/dist/platform/messaging/nats-server.js');
  if (!fs.existsSync(natsServerModule)) {
    throw new Error('the integration tests run the built apps: run `npm run build` first');
  }
  const { startNatsServer } = await import(natsServerModule);
  const workers = Math.max(1, globalConfig.maxWorkers ?? 1);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-test-nats-'));
  const servers = await Promise.all(
    Array.from({ length: workers }, (_, i) => startNatsServer({ dir: path.join(dir, String(i + 1)) })),
  );
  // Never left running, however jest ends.
  process.once('exit', () => servers.forEach((s) => s.kill()));
  process.env.HEARTH_TEST_NATS_URLS = servers.map((s) => s.url).join(',');

  const template = `hearth_test_template_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${template}`);
  } finally {
    await admin.end();
  }
  const url = new URL(ADMIN_URL);
  url.pathname = `/${template}`;
  execFileSync(process.execPath, [path.join(ROOT, 'apps/control-plane/bin/hearth.js'), 'migrate'], {
    env: { ...process.env, DATABASE_URL: url.toString(), MIGRATION_DATABASE_URL: url.toString() },
    stdio: 'pipe',
  });
  process.env.HEARTH_TEST_DATABASE_TEMPLATE = template;

  globalThis.hearthIntegration = { servers, dir, template };
}
