import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { deleteAgentConsumers } from './nats.js';
import { HEARTH_BIN } from './paths.js';

/** The local Postgres the tests use (trust auth). Override with TEST_DATABASE_ADMIN_URL. */
export const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  name: string;
  /** Owner/superuser URL: for migrations and for tests that inspect or tamper as an administrator. */
  adminUrl: string;
  /** The control plane's URL: connects as hearth_app, neither owner nor superuser. */
  appUrl: string;
  drop(): Promise<void>;
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

function withUser(url: string, user: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = '';
  return u.toString();
}

/**
 * A fresh database, migrated with the real `hearth migrate`. Each test file gets its own: in the
 * integration suite a copy of the one database its global setup migrated (integration.global-setup.mjs),
 * elsewhere migrated here.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `hearth_test_${randomBytes(6).toString('hex')}`;
  const template = process.env.HEARTH_TEST_DATABASE_TEMPLATE;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}${template ? ` TEMPLATE ${template}` : ''}`);
  await admin.end();
  const adminUrl = withDatabase(ADMIN_URL, name);
  if (!template) {
    execFileSync(process.execPath, [HEARTH_BIN, 'migrate'], {
      env: { ...process.env, DATABASE_URL: adminUrl, MIGRATION_DATABASE_URL: adminUrl },
      stdio: 'pipe',
    });
  }
  return {
    name,
    adminUrl,
    appUrl: withUser(adminUrl, 'hearth_app'),
    async drop() {
      // The agents' consumers live on the shared nats-server, beyond the database (see nats.ts).
      const agents = await query<{ id: string }>(adminUrl, `SELECT id FROM agents`).catch(() => []);
      await deleteAgentConsumers(agents.map((a) => a.id)).catch(() => undefined); // no server: nothing to clean
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** Runs one query as the given URL's role and returns its rows. */
export async function query<T = Record<string, unknown>>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}
