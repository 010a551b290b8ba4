/**
 * nvidia-smi's CSV queries. With `--format=csv,noheader,nounits` each GPU (or compute process) is
 * one line of ", "-separated values in the order asked; a value the GPU cannot give is printed in
 * brackets: `[N/A]`, `[Not Supported]`, `[Insufficient Permissions]`, `[Unknown Error]`.
 * Those become null. A line with the wrong number of fields, or a field that is not what it should
 * be, is skipped; a number no GPU could report is rejected.
 */
import { GPU_UUID, TELEMETRY_LIMITS } from '@hearth/contracts';
import {
  Bounds,
  cleanName,
  isGpuIndex,
  isPid,
  type GpuProcess,
  type GpuReading,
  type Parsed,
} from './gpu-reading.js';

export const NVIDIA_SMI = 'nvidia-smi';

export const NVIDIA_GPU_FIELDS = [
  'index',
  'uuid',
  'name',
  'utilization.gpu',
  'utilization.memory',
  'memory.used',
  'memory.total',
  'power.draw',
  'power.limit',
  'temperature.gpu',
  'clocks.sm',
  'mig.mode.current',
] as const;

export const NVIDIA_APP_FIELDS = ['pid', 'gpu_uuid', 'used_memory'] as const;

const FORMAT = '--format=csv,noheader,nounits';
export const NVIDIA_GPU_ARGS = [`--query-gpu=${NVIDIA_GPU_FIELDS.join(',')}`, FORMAT] as const;
export const NVIDIA_APP_ARGS = [`--query-compute-apps=${NVIDIA_APP_FIELDS.join(',')}`, FORMAT] as const;

/** nvidia-smi's answer (exit code 6) on a host whose driver sees no GPU. */
export const NO_DEVICES = /No devices were found/i;

/** A line that does not hold what it should; the whole line is skipped. */
class Garbage extends Error {}

export function parseNvidiaGpus(output: string): Parsed<GpuReading> {
  const seen = new Set<number>();
  return parseCsv(output, NVIDIA_GPU_FIELDS.length, (fields, bounds) => {
    const [index, uuid, name, ...rest] = fields;
    const gpu = integer(index);
    if (gpu === null || !isGpuIndex(gpu) || seen.has(gpu) || !name || isNotAvailable(name)) {
      throw new Garbage();
    }
    const [util, memUtil, used, total, power, limit, temp, clock] = rest.slice(0, 8).map(number);
    const mig = migMode(rest[8]);
    const id = gpuUuid(uuid);
    // Every field is read before any is bounds-checked: a skipped line rejects nothing.
    seen.add(gpu);
    const memoryTotalMiB = bounds.gpuMiB(total);
    return {
      vendor: 'nvidia',
      index: gpu,
      uuid: id,
      name: cleanName(name),
      memoryTotalMiB,
      powerLimitW: bounds.watts(limit),
      mig,
      utilizationPct: bounds.percent(util),
      memoryUtilizationPct: bounds.percent(memUtil),
      memoryUsedMiB: bounds.used(bounds.gpuMiB(used), memoryTotalMiB),
      powerW: bounds.watts(power),
      temperatureC: bounds.celsius(temp),
      smClockMHz: bounds.megahertz(clock),
    };
  });
}

export function parseNvidiaApps(output: string): Parsed<GpuProcess> {
  return parseCsv(output, NVIDIA_APP_FIELDS.length, ([pidText, uuid, used], bounds) => {
    const pid = integer(pidText);
    if (pid === null || !isPid(pid) || isNotAvailable(uuid)) throw new Garbage();
    const gpuUuid = gpuUuidOrGarbage(uuid);
    return { pid, gpuUuid, usedMemoryMiB: bounds.gpuMiB(number(used)) };
  });
}

function parseCsv<T>(
  output: string,
  width: number,
  parse: (fields: string[], bounds: Bounds) => T,
): Parsed<T> {
  const items: T[] = [];
  const bounds = new Bounds();
  let skippedLines = 0;
  for (const line of lines(output)) {
    const fields = line.split(',').map((f) => f.trim());
    try {
      if (fields.length !== width) throw new Garbage();
      items.push(parse(fields, bounds));
    } catch (err) {
      if (!(err instanceof Garbage)) throw err;
      skippedLines++;
    }
  }
  return { items, skippedLines, rejectedValues: bounds.rejected };
}

function lines(output: string): string[] {
  return output
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !NO_DEVICES.test(line));
}

function isNotAvailable(field: string): boolean {
  return /^\[.*\]$/.test(field) || field === 'N/A';
}

/** A number, null for a bracketed "not available"; anything else is garbage. */
function number(field: string): number | null {
  if (isNotAvailable(field)) return null;
  if (!/^-?\d+(\.\d+)?$/.test(field)) throw new Garbage();
  return Number(field);
}

function integer(field: string): number | null {
  const value = number(field);
  if (value !== null && !Number.isInteger(value)) throw new Garbage();
  return value;
}

function gpuUuid(field: string): string | null {
  return isNotAvailable(field) ? null : gpuUuidOrGarbage(field);
}

function gpuUuidOrGarbage(field: string): string {
  if (field.length > TELEMETRY_LIMITS.maxUuidChars || !GPU_UUID.test(field)) throw new Garbage();
  return field;
}

function migMode(field: string): boolean | null {
  if (field === 'Enabled') return true;
  if (field === 'Disabled') return false;
  if (isNotAvailable(field)) return null;
  throw new Garbage();
}
