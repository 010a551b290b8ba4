/**
 * A job's GPUs for the time it runs: assigned by the allocator before anything starts (whole GPUs,
 * never one another job holds) and given back when it ends. A job that asks for more GPUs than are
 * free is refused with the allocator's reason rather than started on shared ones. Its environment
 * then names only its own GPUs (CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES); a job that asked for
 * none sees none.
 */
import type { JobDispatch } from '@hearth/contracts';
import type { GpuAllocator, GpuDevice } from '../telemetry/gpu-allocator.js';

export type GpuLease =
  | { ok: true; gpus: GpuDevice[]; env: Record<string, string>; release: () => void }
  | { ok: false; reason: string };

/** `isolated`: the job will see only its own GPUs' device files (see GpuAllocator.envFor). */
export function leaseGpus(
  allocator: GpuAllocator | undefined,
  job: Pick<JobDispatch, 'jobId' | 'gpus' | 'gpuVendor'>,
  options: { isolated?: boolean } = {},
): GpuLease {
  const count = job.gpus ?? 0;
  if (!allocator) {
    return count === 0
      ? { ok: true, gpus: [], env: {}, release: () => undefined }
      : { ok: false, reason: 'this agent does not assign GPUs' };
  }
  const assigned = allocator.assign(job.jobId, count, job.gpuVendor);
  if (!assigned.ok) return { ok: false, reason: `refused: ${assigned.reason}`.slice(0, 512) };
  return {
    ok: true,
    gpus: assigned.gpus,
    env: allocator.envFor(job.jobId, options),
    release: () => allocator.release(job.jobId),
  };
}
