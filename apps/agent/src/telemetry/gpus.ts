/**
 * GPU detection through the vendors' CLIs. A missing tool means no GPU of that kind, not an
 * error; anything a tool prints is parsed defensively and bounded to what SystemInfo allows.
 */
import type { GpuInfo } from '@hearth/contracts';
import { createToolRunner } from './tool-runner.js';

const TOOL_TIMEOUT_MS = 5000;
const MAX_GPUS = 64;
const MAX_NAME = 128;
const MIB = 1024 * 1024;

export type ToolRunner = (file: string, args: readonly string[]) => Promise<string | null>;

const run = createToolRunner({ timeoutMs: TOOL_TIMEOUT_MS, maxOutputBytes: 1024 * 1024 });

/** Runs a tool with a timeout (then killed); null when it is missing, fails or times out. */
export const runTool: ToolRunner = async (file, args) => {
  const result = await run(file, args);
  return result.status === 'ok' ? result.stdout : null;
};

/** `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`: "name, MiB" lines. */
export function parseNvidiaSmi(output: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const line of output.split('\n')) {
    const comma = line.lastIndexOf(',');
    if (comma < 0) continue;
    const name = line.slice(0, comma).trim();
    if (!name) continue;
    const mib = Number(line.slice(comma + 1).trim());
    gpus.push({
      vendor: 'nvidia',
      name: name.slice(0, MAX_NAME),
      memoryBytes: Number.isFinite(mib) && mib >= 0 ? Math.round(mib * MIB) : null,
    });
  }
  return gpus.slice(0, MAX_GPUS);
}

/** `rocm-smi --showproductname --json`: { "card0": { "Card series": …, "Card model": … }, … }. */
export function parseRocmSmi(output: string): GpuInfo[] {
  let json: unknown;
  try {
    json = JSON.parse(output);
  } catch {
    return [];
  }
  if (typeof json !== 'object' || json === null) return [];
  const gpus: GpuInfo[] = [];
  for (const [card, fields] of Object.entries(json)) {
    if (!/^card\d+$/i.test(card) || typeof fields !== 'object' || fields === null) continue;
    const record = fields as Record<string, unknown>;
    const name = ['Card series', 'Card Series', 'Card model', 'Card Model', 'Card SKU']
      .map((key) => record[key])
      .find((value): value is string => typeof value === 'string' && value.trim() !== '');
    gpus.push({ vendor: 'amd', name: (name ?? card).trim().slice(0, MAX_NAME), memoryBytes: null });
  }
  return gpus.slice(0, MAX_GPUS);
}

export async function detectGpus(run: ToolRunner = runTool): Promise<GpuInfo[]> {
  const [nvidia, amd] = await Promise.all([
    run('nvidia-smi', ['--query-gpu=name,memory.total', '--format=csv,noheader,nounits']),
    run('rocm-smi', ['--showproductname', '--json']),
  ]);
  return [...(nvidia ? parseNvidiaSmi(nvidia) : []), ...(amd ? parseRocmSmi(amd) : [])].slice(0, MAX_GPUS);
}
