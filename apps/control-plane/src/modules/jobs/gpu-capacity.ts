/**
 * GPU requests in scheduling: an agent can take a job that asks for GPUs only when its heartbeat's
 * system info lists that many GPUs (of the vendor, when the job names one) beyond those its active
 * jobs asked for. The agent enforces the same on its side (it refuses rather than overcommits); this
 * keeps such jobs from being sent where they would be refused.
 */
/** Attempt states that hold an agent's resources (as dispatcher.service.ts ACTIVE). */
const ACTIVE_STATES_SQL = `('DISPATCHED','RUNNING')`;

export interface GpuNeed {
  count: number;
  vendor: 'nvidia' | 'amd' | null;
}

export function gpuNeedOf(job: { gpus?: number | null; gpuVendor?: 'nvidia' | 'amd' | null }): GpuNeed {
  return { count: job.gpus ?? 0, vendor: job.gpuVendor ?? null };
}

/** The agent's GPUs (of the vendor), from its last heartbeat. `a` is the agents row; $v the vendor. */
const total = (v: string) =>
  `(SELECT count(*) FROM jsonb_array_elements(a.gpus) g WHERE ${v}::text IS NULL OR g->>'vendor' = ${v}::text)`;

/** GPUs the agent's active jobs asked for (those of another vendor do not count when one is named). */
const held = (v: string) =>
  `(SELECT coalesce(sum(j.gpus), 0) FROM job_attempts t JOIN jobs j ON j.id = t.job_id
     WHERE t.agent_id = a.id AND t.state IN ${ACTIVE_STATES_SQL}
       AND (${v}::text IS NULL OR j.gpu_vendor IS NULL OR j.gpu_vendor = ${v}::text))`;

/** A WHERE condition on agents `a`: enough free GPUs for $n of vendor $v. */
export function hasFreeGpus(n: string, v: string): string {
  return `(${n}::int = 0 OR ${total(v)} - ${held(v)} >= ${n}::int)`;
}

/** A WHERE condition on agents `a`: enough GPUs at all (free or not). */
export function hasGpus(n: string, v: string): string {
  return `(${n}::int = 0 OR ${total(v)} >= ${n}::int)`;
}
