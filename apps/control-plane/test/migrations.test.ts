/** Every migration has a working down: up, down, up again on a real Postgres leaves the same schema. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createTestDatabase, HEARTH_BIN, query, runProcess, type TestDatabase } from '@hearth/testing';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase(); // migrated up by `hearth migrate`
});
afterAll(async () => {
  await db?.drop();
});

const hearth = (...args: string[]) =>
  runProcess(process.execPath, [HEARTH_BIN, 'migrate', ...args], { DATABASE_URL: db.adminUrl });

const schema = () =>
  query<{ t: string }>(
    db.adminUrl,
    `SELECT table_name || '.' || column_name || ':' || data_type AS t FROM information_schema.columns
      WHERE table_schema = 'public' AND table_name <> 'migrations' ORDER BY 1`,
  ).then((rows) => rows.map((r) => r.t));

describe('hearth migrate', () => {
  it('is idempotent, reverts cleanly and re-applies to the same schema', async () => {
    const before = await schema();
    expect(before.length).toBeGreaterThan(0);
    expect((await hearth()).stdout).toContain('database is up to date');

    // Newest first, down to nothing.
    const reverted: string[] = [];
    for (;;) {
      const down = await hearth('--revert');
      expect(down.code).toBe(0);
      if (down.stdout.includes('no migration to revert')) break;
      reverted.push(down.stdout.match(/reverted: (\S+)/)![1]);
    }
    expect(reverted.at(-1)).toMatch(/^Foundation\d+$/);
    expect(reverted.length).toBeGreaterThanOrEqual(2);
    expect(await schema()).toEqual([]);

    const up = await hearth();
    expect(up.stdout).toMatch(/applied: Foundation\d+/);
    expect(await schema()).toEqual(before);
  });
});
