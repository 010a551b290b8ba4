import type { EntityManager } from 'typeorm';

/**
 * Runs an UPDATE or DELETE … RETURNING and gives its rows. TypeORM's pg driver answers those
 * statements with [rows, affectedCount] (INSERT and SELECT answer with the rows alone).
 */
export async function changedRows<T>(m: EntityManager, sql: string, params: unknown[]): Promise<T[]> {
  const [rows] = (await m.query(sql, params)) as [T[], number];
  return rows;
}
