import { describe, expect, it } from '@jest/globals';
import { split, toCsv, withRawTail } from './usage-report.service.js';

const at = (iso: string) => new Date(iso);

describe('usage report', () => {
  it('reads whole hours from hourly rollups and the edges from minute ones', () => {
    expect(split(at('2026-11-21T09:45:00Z'), at('2026-11-21T12:10:00Z'))).toEqual([
      { table: 'telemetry_gpu_1h', from: at('2026-11-21T10:00:00Z'), to: at('2026-11-21T12:00:00Z') },
      { table: 'telemetry_gpu_1m', from: at('2026-11-21T09:45:00Z'), to: at('2026-11-21T10:00:00Z') },
      { table: 'telemetry_gpu_1m', from: at('2026-11-21T12:00:00Z'), to: at('2026-11-21T12:10:00Z') },
    ]);
    expect(split(at('2026-11-21T10:00:00Z'), at('2026-11-21T11:00:00Z'))).toEqual([
      { table: 'telemetry_gpu_1h', from: at('2026-11-21T10:00:00Z'), to: at('2026-11-21T11:00:00Z') },
    ]);
    expect(split(at('2026-11-21T10:05:00Z'), at('2026-11-21T10:50:00Z'))).toEqual([
      { table: 'telemetry_gpu_1m', from: at('2026-11-21T10:05:00Z'), to: at('2026-11-21T10:50:00Z') },
    ]);
  });

  it('reads what the rollups have not reached from the raw samples', () => {
    const parts = split(at('2026-11-21T09:45:00Z'), at('2026-11-21T12:10:00Z'));
    // The watermark inside an hour: that hour from its minutes up to the watermark, then raw.
    expect(withRawTail(parts, at('2026-11-21T11:20:00Z'))).toEqual([
      { table: 'telemetry_gpu_1h', from: at('2026-11-21T10:00:00Z'), to: at('2026-11-21T11:00:00Z') },
      { table: 'telemetry_gpu_1m', from: at('2026-11-21T11:00:00Z'), to: at('2026-11-21T11:20:00Z') },
      { table: 'raw', from: at('2026-11-21T11:20:00Z'), to: at('2026-11-21T12:00:00Z') },
      { table: 'telemetry_gpu_1m', from: at('2026-11-21T09:45:00Z'), to: at('2026-11-21T10:00:00Z') },
      { table: 'raw', from: at('2026-11-21T12:00:00Z'), to: at('2026-11-21T12:10:00Z') },
    ]);
    // Inside the last minutes: only their tail is raw.
    expect(withRawTail(parts, at('2026-11-21T12:08:00Z'))).toEqual([
      parts[0],
      parts[1],
      { table: 'telemetry_gpu_1m', from: at('2026-11-21T12:00:00Z'), to: at('2026-11-21T12:08:00Z') },
      { table: 'raw', from: at('2026-11-21T12:08:00Z'), to: at('2026-11-21T12:10:00Z') },
    ]);
    // All rolled up: unchanged. Nothing rolled up: all raw.
    expect(withRawTail(parts, at('2026-11-21T13:00:00Z'))).toEqual(parts);
    expect(withRawTail(parts, at('2026-11-21T09:00:00Z')).map((p) => p.table)).toEqual(['raw', 'raw', 'raw']);
  });

  it('writes RFC 4180 CSV, quoting what needs it and defusing spreadsheet formulas', () => {
    const csv = toCsv({
      from: at('2026-11-21T10:00:00Z'),
      to: at('2026-11-21T11:00:00Z'),
      currency: 'EUR',
      rows: [
        {
          projectId: 'p1',
          projectName: 'Vision, "v2"',
          userId: 'u1',
          user: '=HYPERLINK("x")',
          gpuModel: 'NVIDIA H100 80GB HBM3',
          gpuHours: 1.5,
          idleGpuHours: 0.25,
          energyKwh: 0.9,
          pricePerGpuHour: 2,
          cost: 3,
        },
        {
          projectId: null,
          projectName: null,
          userId: 'u2',
          user: 'a@b.c',
          gpuModel: 'unknown',
          gpuHours: 1 / 3,
          idleGpuHours: 0,
          energyKwh: 0,
          pricePerGpuHour: null,
          cost: null,
        },
      ],
      totals: { gpuHours: 0, idleGpuHours: 0, energyKwh: 0, cost: 0, unpricedGpuHours: 0 },
    });
    expect(csv.split('\r\n')).toEqual([
      'project_id,project,user_id,user,gpu_model,gpu_hours,idle_gpu_hours,energy_kwh,price_per_gpu_hour,cost,currency',
      'p1,"Vision, ""v2""",u1,"\'=HYPERLINK(""x"")",NVIDIA H100 80GB HBM3,1.5,0.25,0.9,2,3,EUR',
      ',,u2,a@b.c,unknown,0.333333,0,0,,,EUR',
      '',
    ]);
  });
});
