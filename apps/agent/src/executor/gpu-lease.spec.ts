import { describe, expect, it } from '@jest/globals';
import { GpuAllocator } from '../telemetry/gpu-allocator.js';
import { leaseGpus } from './gpu-lease.js';

const four = Array.from({ length: 4 }, (_, i) => ({ vendor: 'nvidia' as const, index: i, uuid: `GPU-${i}` }));

describe('leaseGpus', () => {
  it('assigns the GPUs a job asks for, names only those in its environment, and gives them back', () => {
    const allocator = new GpuAllocator(four);
    const lease = leaseGpus(allocator, { jobId: 'a', gpus: 2 });
    expect(lease).toMatchObject({
      ok: true,
      env: { CUDA_VISIBLE_DEVICES: 'GPU-0,GPU-1', HIP_VISIBLE_DEVICES: '-1' },
    });
    expect(allocator.free()).toHaveLength(2);
    if (lease.ok) lease.release();
    expect(allocator.free()).toHaveLength(4);
  });

  it('refuses rather than overcommits', () => {
    const allocator = new GpuAllocator(four);
    expect(leaseGpus(allocator, { jobId: 'a', gpus: 3 }).ok).toBe(true);
    expect(leaseGpus(allocator, { jobId: 'b', gpus: 2 })).toEqual({
      ok: false,
      reason: 'refused: not enough free GPUs: asked for 2 GPUs, 1 NVIDIA GPU or 0 AMD GPUs free',
    });
    expect(leaseGpus(allocator, { jobId: 'c', gpus: 1, gpuVendor: 'amd' })).toMatchObject({ ok: false });
  });

  it('shows a job that asked for no GPU none of them', () => {
    const lease = leaseGpus(new GpuAllocator(four), { jobId: 'a' });
    expect(lease).toMatchObject({ ok: true, env: { CUDA_VISIBLE_DEVICES: '-1' } });
  });

  it('without an allocator, runs jobs that need no GPU and refuses those that do', () => {
    expect(leaseGpus(undefined, { jobId: 'a' })).toMatchObject({ ok: true, env: {} });
    expect(leaseGpus(undefined, { jobId: 'a', gpus: 1 })).toEqual({
      ok: false,
      reason: 'this agent does not assign GPUs',
    });
  });
});
