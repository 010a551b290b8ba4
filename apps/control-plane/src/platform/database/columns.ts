import type { ValueTransformer } from 'typeorm';

/** bigint columns arrive from pg as strings; ours stay well inside 2^53. */
export const bigintAsNumber: ValueTransformer = {
  to: (v: number | null | undefined) => v,
  from: (v: string | null) => (v === null ? null : Number(v)),
};
