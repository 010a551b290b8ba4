/**
 * Transactions against the real Postgres, as the app role: the one-round-trip form the hot paths use
 * (values inlined as literals, one implicit transaction, tenant-scoped by RLS) and afterCommit.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { DataSource } from 'typeorm';
import { createOrganization, createTestDatabase, query, type TestDatabase } from '@hearth/testing';
import { createDataSource } from '../src/platform/database/data-source.js';
import { Transactions } from '../src/platform/tenancy/transactions.js';

let db: TestDatabase;
let ds: DataSource;
let tx: Transactions;
let orgA: string;
let orgB: string;

beforeAll(async () => {
  db = await createTestDatabase();
  orgA = (await createOrganization(db.appUrl, 'Round Trip A')).organizationId;
  orgB = (await createOrganization(db.appUrl, 'Round Trip B')).organizationId;
  ds = createDataSource(db.appUrl, { poolSize: 2 });
  await ds.initialize();
  tx = new Transactions(ds);
});

afterAll(async () => {
  await ds?.destroy();
  await db?.drop();
});

const projectNames = async (tenantId: string) =>
  (
    await query<{ name: string }>(
      db.adminUrl,
      `SELECT name FROM projects WHERE tenant_id = $1 ORDER BY name`,
      [tenantId],
    )
  ).map((r) => r.name);

describe('Transactions.oneRoundTrip', () => {
  it('inlines values as literals: quotes, backslashes and SQL in a value stay a value', async () => {
    const nasty = `it's \\ "x"'); DROP TABLE jobs; --`;
    const [rows] = await tx.oneRoundTrip(orgA, [
      {
        sql: `SELECT $1::text AS s, $2::int AS n, $3::boolean AS b, $4::text AS z, $10::text AS ten`,
        params: [nasty, 42, true, null, 'a', 'b', 'c', 'd', 'e', '$1'],
      },
    ]);
    expect(rows).toEqual([{ s: nasty, n: 42, b: true, z: null, ten: '$1' }]);
    expect((await query(db.adminUrl, `SELECT count(*)::int AS n FROM jobs`))[0]).toEqual({ n: 0 });
  });

  it('refuses what cannot be inlined, before sending anything', async () => {
    await expect(tx.oneRoundTrip(orgA, [{ sql: `SELECT $1::int`, params: [Number.NaN] }])).rejects.toThrow(
      /finite/,
    );
    await expect(tx.oneRoundTrip(orgA, [{ sql: `SELECT $2::int`, params: [1] }])).rejects.toThrow(/no value/);
    await expect(tx.oneRoundTrip('not-a-uuid', [{ sql: `SELECT 1` }])).rejects.toThrow(/tenant id/);
  });

  it('runs the statements in order, in one transaction: all or nothing', async () => {
    const [, inserted] = await tx.oneRoundTrip(orgA, [
      {
        sql: `INSERT INTO projects (id, tenant_id, name) VALUES (gen_random_uuid(), $1, $2)`,
        params: [orgA, 'one'],
      },
      { sql: `SELECT name FROM projects WHERE name = $1`, params: ['one'] },
    ]);
    expect(inserted).toEqual([{ name: 'one' }]);
    // The second insert breaks the unique name: the first of the same message is rolled back with it.
    await expect(
      tx.oneRoundTrip(orgA, [
        {
          sql: `INSERT INTO projects (id, tenant_id, name) VALUES (gen_random_uuid(), $1, $2)`,
          params: [orgA, 'two'],
        },
        {
          sql: `INSERT INTO projects (id, tenant_id, name) VALUES (gen_random_uuid(), $1, $2)`,
          params: [orgA, 'one'],
        },
      ]),
    ).rejects.toThrow(/duplicate key/);
    expect(await projectNames(orgA)).toEqual(['one']);
    // The connection went back to the pool clean: the next transaction works.
    const [[{ n }]] = await tx.oneRoundTrip(orgA, [{ sql: `SELECT count(*)::int AS n FROM projects` }]);
    expect(n).toBe(1);
  });

  it("is scoped to the tenant: another tenant's rows are invisible and cannot be written", async () => {
    const [rows] = await tx.oneRoundTrip(orgB, [{ sql: `SELECT name FROM projects` }]);
    expect(rows).toEqual([]);
    await expect(
      tx.oneRoundTrip(orgB, [
        {
          sql: `INSERT INTO projects (id, tenant_id, name) VALUES (gen_random_uuid(), $1, 'x')`,
          params: [orgA],
        },
      ]),
    ).rejects.toThrow(/row-level security/);
    expect(await projectNames(orgA)).toEqual(['one']);
  });
});

describe('Transactions.afterCommit', () => {
  it('runs after COMMIT, in order, and never after a rollback', async () => {
    const seen: string[] = [];
    await tx.tenant(orgA, async (m) => {
      tx.afterCommit(m, () => seen.push('first'));
      tx.afterCommit(m, () => seen.push('second'));
      expect(seen).toEqual([]);
    });
    expect(seen).toEqual(['first', 'second']);

    await expect(
      tx.tenant(orgA, async (m) => {
        tx.afterCommit(m, () => seen.push('rolled back'));
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(seen).toEqual(['first', 'second']);
  });

  it('is refused outside a transaction', async () => {
    let manager: Parameters<Parameters<Transactions['tenant']>[1]>[0] | undefined;
    await tx.tenant(orgA, async (m) => {
      manager = m;
    });
    expect(() => tx.afterCommit(manager!, () => undefined)).toThrow(/outside a transaction/);
  });
});
