/**
 * rocm-smi's JSON output: { "card0": { "<metric> (<unit>)": "<value>", … }, …, "system": { … } }.
 * Values are strings (a few versions print numbers); what a card cannot report is "N/A" or
 * missing. Key names moved between ROCm releases, so each metric is looked up under every name it
 * has had (e.g. power: "Current Socket Graphics Package Power (W)" on MI300, "Average Graphics
 * Package Power (W)" before). `--showpids` adds "system": { "PID<pid>": "<name>, <gpu count>,
 * <vram bytes>, <sdma bytes>, <cu occupancy>" }: which processes use GPUs, not which GPUs they use.
 * A card or process whose values are not what they should be is skipped; a number no GPU could
 * report is rejected.
 */
import { GPU_UUID, TELEMETRY_LIMITS } from '@hearth/contracts';
import {
  Bounds,
  cleanName,
  isGpuIndex,
  isPid,
  type GpuProcess,
  type GpuReading,
  type ParseCounts,
} from './gpu-reading.js';

export const ROCM_SMI = 'rocm-smi';

export const ROCM_SMI_ARGS = [
  '--showuse',
  '--showmemuse',
  '--showpower',
  '--showmaxpower',
  '--showtemp',
  '--showmeminfo',
  'vram',
  '--showuniqueid',
  '--showproductname',
  '--showgpuclocks',
  '--showpids',
  '--json',
] as const;

export interface RocmSmiOutput extends ParseCounts {
  gpus: GpuReading[];
  processes: GpuProcess[];
}

const KEYS = {
  name: ['Card Series', 'Card series', 'Card Model', 'Card model', 'Device Name'],
  uuid: ['Unique ID'],
  utilization: ['GPU use (%)'],
  memoryUtilization: ['GPU Memory Read/Write Activity (%)', 'GPU memory use (%)'],
  memoryUsed: ['VRAM Total Used Memory (B)'],
  memoryTotal: ['VRAM Total Memory (B)'],
  power: ['Current Socket Graphics Package Power (W)', 'Average Graphics Package Power (W)'],
  powerLimit: ['Max Graphics Package Power (W)'],
  temperature: ['Temperature (Sensor edge) (C)', 'Temperature (Sensor junction) (C)'],
  clock: ['sclk clock speed:'],
} as const;

const MIB = 1024 * 1024;
const NOT_AVAILABLE = /^(N\/A|NA|unknown|unsupported|not supported)?$/i;

/** A card or process entry that does not hold what it should; it is skipped. */
class Garbage extends Error {}

export function parseRocmSmiJson(output: string): RocmSmiOutput {
  const result: RocmSmiOutput = { gpus: [], processes: [], skippedLines: 0, rejectedValues: 0 };
  if (output.trim() === '') return result; // rocm-smi prints nothing when it has nothing to say
  const json = parseJson(output);
  if (json === null) {
    result.skippedLines++;
    return result;
  }
  const bounds = new Bounds();
  // "card1" and "card01" would be the same card: a GPU listed twice is refused by the contract.
  const seen = new Set<number>();
  for (const [key, value] of Object.entries(json)) {
    const card = /^card(\d+)$/.exec(key);
    try {
      if (card) {
        const gpu = readCard(Number(card[1]), record(value), bounds, seen);
        seen.add(gpu.index);
        result.gpus.push(gpu);
      } else if (key === 'system') result.processes.push(...readProcesses(record(value), result));
    } catch (err) {
      if (!(err instanceof Garbage)) throw err;
      result.skippedLines++;
    }
  }
  result.gpus.sort((a, b) => a.index - b.index);
  result.rejectedValues += bounds.rejected;
  return result;
}

/** The JSON object, tolerating a warning printed before or after it; null when there is none. */
function parseJson(output: string): Record<string, unknown> | null {
  const start = output.indexOf('{');
  const end = output.lastIndexOf('}');
  if (start < 0 || end < start) return null;
  try {
    const json: unknown = JSON.parse(output.slice(start, end + 1));
    return typeof json === 'object' && json !== null && !Array.isArray(json)
      ? (json as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

function readCard(
  index: number,
  fields: Record<string, unknown>,
  bounds: Bounds,
  seen: ReadonlySet<number>,
): GpuReading {
  if (!isGpuIndex(index) || seen.has(index)) throw new Garbage();
  const get = (keys: readonly string[]) => text(keys.map((k) => fields[k]).find((v) => v !== undefined));
  // Every field is read before any is bounds-checked: a skipped card rejects nothing.
  const name = get(KEYS.name);
  const uuid = get(KEYS.uuid);
  const [utilization, memoryUtilization, power, powerLimit, temperature] = [
    KEYS.utilization,
    KEYS.memoryUtilization,
    KEYS.power,
    KEYS.powerLimit,
    KEYS.temperature,
  ].map((keys) => firstNumber(keys.map((k) => fields[k])));
  const [used, total] = [KEYS.memoryUsed, KEYS.memoryTotal].map((keys) => number(get(keys)));
  const clock = megahertz(get(KEYS.clock));
  if (uuid !== null && (uuid.length > TELEMETRY_LIMITS.maxUuidChars || !GPU_UUID.test(uuid))) {
    throw new Garbage();
  }
  const memoryTotalMiB = bounds.gpuMiB(total === null ? null : total / MIB);
  return {
    vendor: 'amd',
    index,
    uuid,
    name: cleanName(name ?? `AMD GPU card${index}`),
    memoryTotalMiB,
    powerLimitW: bounds.watts(powerLimit),
    mig: null,
    utilizationPct: bounds.percent(utilization),
    memoryUtilizationPct: bounds.percent(memoryUtilization),
    memoryUsedMiB: bounds.used(bounds.gpuMiB(used === null ? null : used / MIB), memoryTotalMiB),
    powerW: bounds.watts(power),
    temperatureC: bounds.celsius(temperature),
    smClockMHz: bounds.megahertz(clock),
  };
}

function readProcesses(system: Record<string, unknown>, counts: ParseCounts): GpuProcess[] {
  const processes: GpuProcess[] = [];
  for (const [key, value] of Object.entries(system)) {
    if (!key.startsWith('PID')) continue; // driver version and other system facts
    const fields = typeof value === 'string' ? value.split(',').map((f) => f.trim()) : [];
    const pid = /^PID\s*\d+$/.test(key) ? Number(key.slice(3)) : NaN;
    const vram = fields[2] ?? '';
    const bytes = /^\d+$/.test(vram) ? Number(vram) : null;
    if (!isPid(pid) || fields.length !== 5 || (bytes === null && !NOT_AVAILABLE.test(vram))) {
      counts.skippedLines++;
      continue;
    }
    const usedMemoryMiB = bytes === null ? null : Math.round(bytes / MIB);
    processes.push({ pid, gpuUuid: null, usedMemoryMiB });
  }
  return processes;
}

function record(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Garbage();
  return value as Record<string, unknown>;
}

/** A string value, trimmed; null when absent or "N/A". */
function text(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' && typeof value !== 'number') throw new Garbage();
  const trimmed = String(value).trim();
  return NOT_AVAILABLE.test(trimmed) ? null : trimmed;
}

function number(value: string | null): number | null {
  if (value === null) return null;
  if (!/^-?\d+(\.\d+)?$/.test(value)) throw new Garbage();
  return Number(value);
}

/** The first of a metric's names that holds a number ("N/A" under one name falls through). */
function firstNumber(values: readonly unknown[]): number | null {
  for (const value of values) {
    const n = number(text(value));
    if (n !== null) return n;
  }
  return null;
}

/** "(2100Mhz)" → 2100. */
function megahertz(value: string | null): number | null {
  if (value === null) return null;
  const match = /^\(?(\d+(?:\.\d+)?)\s*Mhz\)?$/i.exec(value);
  if (!match) throw new Garbage();
  return Number(match[1]);
}
