import { describe, expect, it } from '@jest/globals';
import { GpuAllocator, type GpuDevice } from './gpu-allocator.js';

const nvidia = (index: number): GpuDevice => ({ vendor: 'nvidia', index, uuid: `GPU-0000000${index}-aaaa` });
const amd = (index: number): GpuDevice => ({ vendor: 'amd', index, uuid: `0x00000000000000a${index}` });
const eightH100 = Array.from({ length: 8 }, (_, i) => nvidia(i));

describe('GpuAllocator', () => {
  it('gives a job whole GPUs, lowest index first, and shows it only those', () => {
    const allocator = new GpuAllocator(eightH100);
    expect(allocator.assign('job-a', 2)).toEqual({ ok: true, gpus: [nvidia(0), nvidia(1)] });
    expect(allocator.assign('job-b', 3)).toEqual({ ok: true, gpus: [nvidia(2), nvidia(3), nvidia(4)] });
    expect(allocator.envFor('job-b')).toEqual({
      CUDA_VISIBLE_DEVICES: 'GPU-00000002-aaaa,GPU-00000003-aaaa,GPU-00000004-aaaa',
      HIP_VISIBLE_DEVICES: '-1',
    });
    expect(allocator.free().map((d) => d.index)).toEqual([5, 6, 7]);
  });

  it('never overcommits: a job that does not fit is refused and takes nothing', () => {
    const allocator = new GpuAllocator(eightH100);
    expect(allocator.assign('job-a', 6).ok).toBe(true);
    expect(allocator.assign('job-b', 3)).toEqual({
      ok: false,
      reason: 'not enough free GPUs: asked for 3 GPUs, 2 NVIDIA GPUs or 0 AMD GPUs free',
    });
    expect(allocator.free()).toHaveLength(2);
    expect(allocator.assign('job-c', 2).ok).toBe(true);
    expect(allocator.assign('job-d', 1).ok).toBe(false);
  });

  it('gives the same answer when the same job asks again, and refuses a different ask', () => {
    const allocator = new GpuAllocator(eightH100);
    const first = allocator.assign('job-a', 4);
    expect(allocator.assign('job-a', 4)).toEqual(first);
    expect(allocator.assign('job-a', 4, 'nvidia')).toEqual(first);
    expect(allocator.free()).toHaveLength(4);
    expect(allocator.assign('job-a', 5)).toEqual({
      ok: false,
      reason: 'job job-a already holds 4 NVIDIA GPUs',
    });
    expect(allocator.assign('job-a', 4, 'amd').ok).toBe(false);
  });

  it('frees GPUs on release, for the next job', () => {
    const allocator = new GpuAllocator([nvidia(0), nvidia(1)]);
    allocator.assign('job-a', 2);
    expect(allocator.assign('job-b', 1).ok).toBe(false);
    expect(allocator.release('job-a')).toBe(true);
    expect(allocator.release('job-a')).toBe(false);
    expect(allocator.assign('job-b', 1)).toEqual({ ok: true, gpus: [nvidia(0)] });
    expect(allocator.envFor('job-a')).toEqual({ CUDA_VISIBLE_DEVICES: '-1', HIP_VISIBLE_DEVICES: '-1' });
  });

  it('hides every GPU from a job that asked for none', () => {
    const allocator = new GpuAllocator(eightH100);
    expect(allocator.assign('cpu-job', 0)).toEqual({ ok: true, gpus: [] });
    expect(allocator.envFor('cpu-job')).toEqual({ CUDA_VISIBLE_DEVICES: '-1', HIP_VISIBLE_DEVICES: '-1' });
    expect(allocator.free()).toHaveLength(8);
  });

  it('keeps a job on one vendor: the one asked for, or the first with enough free', () => {
    const allocator = new GpuAllocator([nvidia(0), amd(0), amd(1)]);
    expect(allocator.assign('job-a', 2)).toEqual({ ok: true, gpus: [amd(0), amd(1)] });
    expect(allocator.envFor('job-a')).toEqual({ CUDA_VISIBLE_DEVICES: '-1', HIP_VISIBLE_DEVICES: '0,1' });
    expect(allocator.assign('job-b', 1, 'amd')).toEqual({
      ok: false,
      reason: 'not enough free GPUs: asked for 1 AMD GPU, 0 AMD GPUs free',
    });
    expect(allocator.assign('job-c', 1)).toEqual({ ok: true, gpus: [nvidia(0)] });
  });

  it('names NVIDIA GPUs by index in PCI bus order when asked, or when a uuid is unknown', () => {
    const byIndex = new GpuAllocator(eightH100, { cudaDevicesBy: 'index' });
    byIndex.assign('job-a', 2);
    expect(byIndex.envFor('job-a')).toEqual({
      CUDA_VISIBLE_DEVICES: '0,1',
      CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
      HIP_VISIBLE_DEVICES: '-1',
    });
    const noUuid = new GpuAllocator([{ vendor: 'nvidia', index: 3, uuid: null }]);
    noUuid.assign('job-a', 1);
    expect(noUuid.envFor('job-a').CUDA_VISIBLE_DEVICES).toBe('3');
  });

  it("numbers a job's GPUs from 0 where they are the only ones it can open (the sandbox)", () => {
    const allocator = new GpuAllocator([amd(0), amd(1), amd(2), amd(3)]);
    allocator.assign('first', 2);
    allocator.assign('job-a', 2);
    expect(allocator.envFor('job-a')).toEqual({ CUDA_VISIBLE_DEVICES: '-1', HIP_VISIBLE_DEVICES: '2,3' });
    expect(allocator.envFor('job-a', { isolated: true })).toEqual({
      CUDA_VISIBLE_DEVICES: '-1',
      HIP_VISIBLE_DEVICES: '0,1',
    });
    const byIndex = new GpuAllocator(eightH100, { cudaDevicesBy: 'index' });
    byIndex.assign('first', 3);
    byIndex.assign('job-a', 1);
    expect(byIndex.envFor('job-a', { isolated: true }).CUDA_VISIBLE_DEVICES).toBe('0');
    // Uuids name a GPU wherever it is numbered: unchanged.
    const byUuid = new GpuAllocator(eightH100);
    byUuid.assign('first', 3);
    byUuid.assign('job-a', 1);
    expect(byUuid.envFor('job-a', { isolated: true })).toEqual(byUuid.envFor('job-a'));
  });

  it('says which job holds a GPU', () => {
    const allocator = new GpuAllocator(eightH100);
    allocator.assign('job-a', 1);
    expect(allocator.ownerOf(nvidia(0))).toBe('job-a');
    expect(allocator.ownerOf(nvidia(1))).toBeNull();
  });

  it('keeps a GPU held while it is gone from the inventory, and hands out one that appears', () => {
    const allocator = new GpuAllocator([nvidia(0), nvidia(1)]);
    allocator.assign('job-a', 1);
    allocator.setDevices([nvidia(1), nvidia(2)]); // GPU 0 fell off the bus
    allocator.setDevices([nvidia(0), nvidia(1), nvidia(2)]); // and came back
    expect(allocator.assign('job-b', 3).ok).toBe(false);
    expect(allocator.assign('job-b', 2)).toEqual({ ok: true, gpus: [nvidia(1), nvidia(2)] });
  });

  it.each([-1, 1.5, 65, Number.NaN])('refuses a count of %p', (count) => {
    const allocator = new GpuAllocator(eightH100);
    expect(allocator.assign('job-a', count)).toEqual({
      ok: false,
      reason: expect.stringContaining('0 to 64'),
    });
    expect(allocator.free()).toHaveLength(8);
  });
});
