/**
 * SQL-first migrations: each `migrations/<timestamp>-<name>.up.sql` (with its `.down.sql`) becomes a
 * TypeORM migration, so DBAs review plain SQL while TypeORM keeps the ledger (table `migrations`) and
 * runs each in a transaction. Files are never edited once landed; a change is a new file.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The repository's migrations/ folder, found from this file in src/ or dist/. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../../../../migrations', import.meta.url));

type MigrationClass = new () => MigrationInterface;

export function loadSqlMigrations(dir: string = MIGRATIONS_DIR): MigrationClass[] {
  const ups = readdirSync(dir)
    .filter((f) => /^\d{13}-[a-z0-9-]+\.up\.sql$/.test(f))
    .sort();
  return ups.map((file) => {
    const [timestamp, ...rest] = file.replace(/\.up\.sql$/, '').split('-');
    const name = rest.map((w) => w[0].toUpperCase() + w.slice(1)).join('') + timestamp;
    const up = readFileSync(join(dir, file), 'utf8');
    const down = readFileSync(join(dir, file.replace(/\.up\.sql$/, '.down.sql')), 'utf8');
    const migration = class implements MigrationInterface {
      name = name;
      async up(q: QueryRunner) {
        await q.query(up);
      }
      async down(q: QueryRunner) {
        await q.query(down);
      }
    };
    Object.defineProperty(migration, 'name', { value: name });
    return migration;
  });
}
