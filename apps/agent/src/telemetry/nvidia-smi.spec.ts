import { describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import { NVIDIA_APP_ARGS, NVIDIA_GPU_ARGS, parseNvidiaApps, parseNvidiaGpus } from './nvidia-smi.js';

const fixture = (name: string) => fs.readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

describe('nvidia-smi', () => {
  it('asks for the fields the parser reads, in its order', () => {
    expect(NVIDIA_GPU_ARGS).toEqual([
      '--query-gpu=index,uuid,name,utilization.gpu,utilization.memory,memory.used,memory.total,power.draw,power.limit,temperature.gpu,clocks.sm,mig.mode.current',
      '--format=csv,noheader,nounits',
    ]);
    expect(NVIDIA_APP_ARGS).toEqual([
      '--query-compute-apps=pid,gpu_uuid,used_memory',
      '--format=csv,noheader,nounits',
    ]);
  });

  it('reads a one-GPU host', () => {
    expect(parseNvidiaGpus(fixture('nvidia-1gpu.csv'))).toEqual({
      items: [
        {
          vendor: 'nvidia',
          index: 0,
          uuid: 'GPU-8d3b6a52-91f4-4c1e-b7a0-2f5d9c6e1a43',
          name: 'NVIDIA A10',
          memoryTotalMiB: 23028,
          powerLimitW: 150,
          mig: null,
          utilizationPct: 34,
          memoryUtilizationPct: 12,
          memoryUsedMiB: 9214,
          powerW: 88.4,
          temperatureC: 52,
          smClockMHz: 1695,
        },
      ],
      skippedLines: 0,
      rejectedValues: 0,
    });
  });

  it('reads an 8×H100 host', () => {
    const { items, skippedLines, rejectedValues } = parseNvidiaGpus(fixture('nvidia-8xh100.csv'));
    expect(items.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(new Set(items.map((g) => g.uuid)).size).toBe(8);
    expect(items.every((g) => g.name === 'NVIDIA H100 80GB HBM3' && g.mig === false)).toBe(true);
    expect(items[2]).toMatchObject({
      utilizationPct: 98,
      memoryUsedMiB: 78217,
      powerW: 634.5,
      smClockMHz: 1965,
    });
    expect(skippedLines + rejectedValues).toBe(0);
  });

  it('makes [N/A] and [Not Supported] null, not zero', () => {
    const { items } = parseNvidiaGpus(fixture('nvidia-na.csv'));
    expect(items[0]).toMatchObject({ powerW: null, powerLimitW: null, mig: null, utilizationPct: 3 });
    expect(items[1]).toMatchObject({
      name: 'Tesla K80',
      utilizationPct: null,
      memoryUtilizationPct: null,
      powerW: null,
      powerLimitW: 149,
      memoryUsedMiB: 0,
    });
  });

  it('reads MIG mode; a MIG-enabled GPU reports no utilisation', () => {
    const { items } = parseNvidiaGpus(fixture('nvidia-mig.csv'));
    expect(items.map((g) => [g.mig, g.utilizationPct, g.memoryUsedMiB])).toEqual([
      [true, null, 31232],
      [false, 88, 60151],
    ]);
  });

  it('skips malformed lines and rejects impossible values, counting both', () => {
    const { items, skippedLines, rejectedValues } = parseNvidiaGpus(fixture('nvidia-malformed.csv'));
    // Skipped: too few fields, "abc" as a number, a warning line, MIG mode "Sideways", index 0 twice.
    expect(skippedLines).toBe(5);
    expect(items.map((g) => g.index)).toEqual([0, 3, 5]);
    // Rejected: 250 % utilisation, -5 W, 90000 MiB used of 81559.
    expect(rejectedValues).toBe(3);
    expect(items[1]).toMatchObject({ utilizationPct: null, powerW: null, memoryUtilizationPct: 59 });
    expect(items[2]).toMatchObject({ memoryUsedMiB: null, memoryTotalMiB: 81559 });
  });

  it('treats "No devices were found" and empty output as no GPUs', () => {
    expect(parseNvidiaGpus('No devices were found\n')).toEqual({
      items: [],
      skippedLines: 0,
      rejectedValues: 0,
    });
    expect(parseNvidiaApps('')).toEqual({ items: [], skippedLines: 0, rejectedValues: 0 });
  });

  it('reads compute processes with the GPU they run on', () => {
    const { items } = parseNvidiaApps(fixture('nvidia-apps-8xh100.csv'));
    expect(items).toHaveLength(5);
    expect(items[4]).toEqual({
      pid: 52310,
      gpuUuid: 'GPU-9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c66',
      usedMemoryMiB: 4482,
    });
    expect(parseNvidiaApps(fixture('nvidia-apps-mig.csv')).items.map((p) => p.usedMemoryMiB)).toEqual([
      null,
      null,
      60112,
    ]);
  });

  it('skips malformed process lines and rejects negative memory', () => {
    const { items, skippedLines, rejectedValues } = parseNvidiaApps(fixture('nvidia-apps-malformed.csv'));
    expect(items.map((p) => [p.pid, p.usedMemoryMiB])).toEqual([
      [41876, 78176],
      [41880, null],
    ]);
    expect(skippedLines).toBe(3);
    expect(rejectedValues).toBe(1);
  });
});
