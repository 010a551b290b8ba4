import { DataSource, type EntitySchema } from 'typeorm';
import { loadSqlMigrations } from './migrations.js';

// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
type EntityTarget = Function | EntitySchema;

export function createDataSource(
  url: string,
  opts: { poolSize: number; entities?: EntityTarget[] },
): DataSource {
  return new DataSource({
    type: 'postgres',
    url,
    entities: opts.entities ?? [],
    migrations: loadSqlMigrations(),
    migrationsTransactionMode: 'each',
    synchronize: false,
    migrationsRun: false,
    logging: false,
    poolSize: opts.poolSize,
    extra: { connectionTimeoutMillis: 5000, application_name: 'hearth-control-plane' },
  });
}

/** Reverts the most recently applied migration (its .down.sql); returns its name, or null if none. */
export async function revertLast(url: string): Promise<string | null> {
  const ds = createDataSource(url, { poolSize: 1 });
  await ds.initialize();
  try {
    const [last] = await ds
      .query<{ name: string }[]>(`SELECT name FROM migrations ORDER BY id DESC LIMIT 1`)
      .catch(() => []);
    if (!last) return null;
    await ds.undoLastMigration({ transaction: 'each' });
    return last.name;
  } finally {
    await ds.destroy();
  }
}

/** Applies pending migrations; returns their names. */
export async function migrate(url: string): Promise<string[]> {
  const ds = createDataSource(url, { poolSize: 1 });
  await ds.initialize();
  try {
    const applied = await ds.runMigrations({ transaction: 'each' });
    return applied.map((m) => m.name);
  } finally {
    await ds.destroy();
  }
}
