import { describe, expect, it } from '@jest/globals';
import { SystemInfo } from '@hearth/contracts';
import { detectGpus, parseNvidiaSmi, parseRocmSmi } from './gpus.js';
import { systemInfo } from './system-info.js';

describe('GPU detection', () => {
  it('parses nvidia-smi CSV (MiB) into bytes', () => {
    expect(parseNvidiaSmi('NVIDIA H100 80GB HBM3, 81559\nNVIDIA A10, 23028\n\n')).toEqual([
      { vendor: 'nvidia', name: 'NVIDIA H100 80GB HBM3', memoryBytes: 81559 * 1024 * 1024 },
      { vendor: 'nvidia', name: 'NVIDIA A10', memoryBytes: 23028 * 1024 * 1024 },
    ]);
    expect(parseNvidiaSmi('Tesla T4, [N/A]')).toEqual([
      { vendor: 'nvidia', name: 'Tesla T4', memoryBytes: null },
    ]);
  });

  it('parses rocm-smi JSON and ignores what is not a card', () => {
    const output = JSON.stringify({
      card0: { 'Card series': 'AMD Instinct MI250X', 'Card model': '0x740c', 'Card vendor': 'AMD' },
      card1: { 'Card model': 'Radeon PRO W7900' },
      system: { 'Driver version': '6.2' },
    });
    expect(parseRocmSmi(output)).toEqual([
      { vendor: 'amd', name: 'AMD Instinct MI250X', memoryBytes: null },
      { vendor: 'amd', name: 'Radeon PRO W7900', memoryBytes: null },
    ]);
    expect(parseRocmSmi('not json')).toEqual([]);
  });

  it('treats missing tools as no GPUs', async () => {
    const calls: string[] = [];
    const gpus = await detectGpus(async (file) => {
      calls.push(file);
      return null;
    });
    expect(gpus).toEqual([]);
    expect(calls.sort()).toEqual(['nvidia-smi', 'rocm-smi']);
  });

  it('builds system info the contract accepts', () => {
    const info = systemInfo([{ vendor: 'nvidia', name: 'x'.repeat(128), memoryBytes: 1 }]);
    expect(SystemInfo.safeParse(info).success).toBe(true);
    expect(info.cpus).toBeGreaterThan(0);
    expect(info.agentVersion).toMatch(/^\d+\.\d+\.\d+/);
  });
});
