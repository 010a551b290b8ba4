/**
 * What the vendor parsers produce: one reading per GPU, in the contract's units and precision, with
 * every value already inside the contract's bounds. A value outside them is rejected (null, and
 * counted); a line or record that cannot be read at all is skipped (and counted).
 */
import { TELEMETRY_LIMITS, type TelemetryGpuSample } from '@hearth/contracts';

export type GpuReading = Omit<TelemetryGpuSample, 'jobId' | 'foreignProcesses'>;

/** A compute process a vendor tool reports on a GPU. */
export interface GpuProcess {
  pid: number;
  /** The GPU it runs on, when the tool says (nvidia-smi does; rocm-smi only counts them). */
  gpuUuid: string | null;
  usedMemoryMiB: number | null;
}

export interface ParseCounts {
  skippedLines: number;
  rejectedValues: number;
}

export interface Parsed<T> extends ParseCounts {
  items: T[];
}

const L = TELEMETRY_LIMITS;

/** Bounds checks that count what they reject. */
export class Bounds {
  rejected = 0;

  percent(value: number | null): number | null {
    return this.within(round(value, 1), 0, 100);
  }

  gpuMiB(value: number | null): number | null {
    return this.within(round(value, 0), 0, L.maxGpuMemoryMiB);
  }

  watts(value: number | null): number | null {
    return this.within(round(value, 1), 0, L.maxPowerW);
  }

  celsius(value: number | null): number | null {
    return this.within(round(value, 1), L.minTemperatureC, L.maxTemperatureC);
  }

  megahertz(value: number | null): number | null {
    return this.within(round(value, 0), 0, L.maxClockMHz);
  }

  /** Memory in use cannot exceed the memory there is. */
  used(used: number | null, total: number | null): number | null {
    if (used === null || total === null || used <= total) return used;
    this.rejected++;
    return null;
  }

  private within(value: number | null, min: number, max: number): number | null {
    if (value === null) return null;
    if (value >= min && value <= max) return value;
    this.rejected++;
    return null;
  }
}

export function round(value: number | null, decimals: number): number | null {
  if (value === null) return null;
  const factor = 10 ** decimals;
  return Math.round(value * factor) / factor;
}

export function isGpuIndex(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= L.maxGpuIndex;
}

export function isPid(value: number): boolean {
  return Number.isInteger(value) && value > 0 && value <= L.maxProcesses;
}

export function cleanName(name: string): string {
  return name.trim().slice(0, L.maxNameChars);
}
