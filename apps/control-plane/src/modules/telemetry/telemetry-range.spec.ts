import { describe, expect, it } from '@jest/globals';
import { resolveRange } from './telemetry-range.js';
import { TelemetryResolution } from './telemetry.model.js';

const at = (iso: string) => new Date(iso);

describe('resolveRange', () => {
  it('chooses the finest resolution that fits the range', () => {
    expect(
      resolveRange({ from: at('2026-11-21T10:00:00Z'), to: at('2026-11-21T10:30:00Z') }).resolution,
    ).toBe('RAW');
    expect(
      resolveRange({ from: at('2026-11-21T00:00:00Z'), to: at('2026-11-22T00:00:00Z') }).resolution,
    ).toBe('MINUTE');
    expect(
      resolveRange({ from: at('2026-11-01T00:00:00Z'), to: at('2026-11-21T00:00:00Z') }).resolution,
    ).toBe('HOUR');
  });

  it('rounds to whole buckets', () => {
    expect(
      resolveRange({
        from: at('2026-11-21T10:00:30Z'),
        to: at('2026-11-21T10:05:10Z'),
        resolution: TelemetryResolution.MINUTE,
      }),
    ).toEqual({ from: at('2026-11-21T10:00:00Z'), to: at('2026-11-21T10:06:00Z'), resolution: 'MINUTE' });
  });

  it('refuses empty, reversed and too-long ranges', () => {
    const from = at('2026-11-21T10:00:00Z');
    expect(() => resolveRange({ from, to: from })).toThrow('from must be before to');
    expect(() =>
      resolveRange({ from, to: at('2026-11-21T17:00:00Z'), resolution: TelemetryResolution.RAW }),
    ).toThrow(/RAW series covers at most 6 hours/);
    expect(() =>
      resolveRange({ from, to: at('2026-12-21T10:00:00Z'), resolution: TelemetryResolution.MINUTE }),
    ).toThrow(/MINUTE series/);
    expect(() => resolveRange({ from: new Date(NaN), to: from })).toThrow('from and to must be times');
  });
});
