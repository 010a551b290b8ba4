import { describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import { parseRocmSmiJson } from './rocm-smi.js';

const fixture = (name: string) => fs.readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

describe('rocm-smi', () => {
  it('reads an 8×MI300X host (ROCm 6 key names)', () => {
    const { gpus, processes, skippedLines, rejectedValues } = parseRocmSmiJson(fixture('rocm-mi300x.json'));
    expect(gpus.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(gpus[0]).toEqual({
      vendor: 'amd',
      index: 0,
      uuid: '0x4e2f5a1cd8b3c0a1',
      name: 'AMD Instinct MI300X OAM',
      memoryTotalMiB: 196288,
      powerLimitW: 750,
      mig: null,
      utilizationPct: 100,
      memoryUtilizationPct: 50,
      memoryUsedMiB: 165888,
      powerW: 712,
      // The edge sensor is N/A on MI300X: the junction temperature stands in.
      temperatureC: 71,
      smClockMHz: 2100,
    });
    expect(processes).toEqual([
      { pid: 412301, gpuUuid: null, usedMemoryMiB: 663553 },
      { pid: 412377, gpuUuid: null, usedMemoryMiB: 663553 },
      { pid: 99881, gpuUuid: null, usedMemoryMiB: 8200 },
    ]);
    expect(skippedLines + rejectedValues).toBe(0);
  });

  it('reads an MI250 host (older key names, N/A power on the second die)', () => {
    const { gpus } = parseRocmSmiJson(fixture('rocm-mi250.json'));
    expect(gpus.map((g) => [g.name, g.uuid, g.powerW, g.temperatureC, g.smClockMHz])).toEqual([
      ['AMD INSTINCT MI250 (MCM) OAM AC MBA', '0x3f1b2c4d5e6a7b80', 91, 38, 1700],
      ['AMD INSTINCT MI250 (MCM) OAM AC MBA', '0x3f1b2c4d5e6a7b81', null, 41, 800],
      ['AMD INSTINCT MI250 (MCM) OAM AC MBA', null, 90, 36, 800],
      ['AMD INSTINCT MI250 (MCM) OAM AC MBA', '0x6a7b8c9d0e1f2031', null, 41, null],
    ]);
    expect(gpus[0]).toMatchObject({ memoryTotalMiB: 65520, memoryUsedMiB: 4106, utilizationPct: 12 });
  });

  it('skips malformed cards and processes, rejects impossible values, and tolerates a warning', () => {
    const { gpus, processes, skippedLines, rejectedValues } = parseRocmSmiJson(fixture('rocm-malformed.txt'));
    expect(gpus.map((g) => g.index)).toEqual([0, 2]);
    // Rejected on card2: 250 % use and -12 W.
    expect(gpus[1]).toMatchObject({ utilizationPct: null, powerW: null, temperatureC: 36 });
    expect(rejectedValues).toBe(2);
    // Skipped: card1 ("abc" use), card3 (not an object), PID4242 (two fields), PIDx.
    expect(skippedLines).toBe(4);
    expect(processes).toEqual([{ pid: 4343, gpuUuid: null, usedMemoryMiB: 2048 }]);
  });

  it('reads a card named twice once (the control plane refuses a sample with a GPU twice)', () => {
    const card = { 'GPU use (%)': '40', 'Card Series': 'AMD Instinct MI300X' };
    const { gpus, skippedLines } = parseRocmSmiJson(
      JSON.stringify({ card1: card, card01: { ...card, 'GPU use (%)': '41' }, card2: card }),
    );
    expect(gpus.map((g) => [g.index, g.utilizationPct])).toEqual([
      [1, 40],
      [2, 40],
    ]);
    expect(skippedLines).toBe(1);
  });

  it('counts output that is not JSON as one skipped record, and reads nothing from it', () => {
    expect(parseRocmSmiJson('ERROR: GPU[0]\t: Unable to initialize rocm_smi\n')).toEqual({
      gpus: [],
      processes: [],
      skippedLines: 1,
      rejectedValues: 0,
    });
    expect(parseRocmSmiJson('')).toEqual({ gpus: [], processes: [], skippedLines: 0, rejectedValues: 0 });
  });
});
