/**
 * Integers every hop can carry faithfully: the control plane stores counts in Postgres `integer`
 * columns and serves them as GraphQL `Int`, both 32-bit. A message with a larger one would fail
 * every try to apply it (a poison message), so schemas stop it at the edge.
 */
import { z } from 'zod';

export const INT32_MAX = 2 ** 31 - 1;

/** A whole number from 0 to INT32_MAX. */
export const storableCount = z.number().int().min(0).max(INT32_MAX);
