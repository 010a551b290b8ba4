/** Jest globalTeardown of the integration project: undoes integration.global-setup.mjs. */
import fs from 'node:fs';
import pg from 'pg';

const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export default async function teardown() {
  const state = globalThis.hearthIntegration;
  if (!state) return;
  await Promise.all(state.servers.map((s) => s.stop()));
  fs.rmSync(state.dir, { recursive: true, force: true });
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${state.template} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}
