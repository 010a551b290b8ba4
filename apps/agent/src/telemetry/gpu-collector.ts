/**
 * Runs the vendors' tools and turns what they print into GPU readings and compute processes. A
 * missing tool (or one that says there is no device) means no GPUs of that kind; a tool that times
 * out or fails is reported, and that vendor's GPUs are absent from the sample.
 */
import type { GpuTool } from '@hearth/contracts';
import type { GpuProcess, GpuReading, ParseCounts } from './gpu-reading.js';
import {
  NO_DEVICES,
  NVIDIA_APP_ARGS,
  NVIDIA_GPU_ARGS,
  NVIDIA_SMI,
  parseNvidiaApps,
  parseNvidiaGpus,
} from './nvidia-smi.js';
import { parseRocmSmiJson, ROCM_SMI, ROCM_SMI_ARGS } from './rocm-smi.js';
import type { RunTool, ToolResult } from './tool-runner.js';

/** rocm-smi installed on a host whose amdgpu driver is not loaded. */
const NO_AMD_DRIVER = /amdgpu not found|driver not initialized|no amd gpus/i;

export interface VendorGpus extends ParseCounts {
  tool: GpuTool;
  /** What the tool answered, for logs and counters (the GPU query's, or the process query's if that failed). */
  result: ToolResult['status'];
  failed: boolean;
  gpus: GpuReading[];
  /** The compute processes on these GPUs; null when the tool could not say. */
  processes: GpuProcess[] | null;
  /** The reason of a failure, for a log line. */
  reason: string | null;
}

export async function collectNvidia(run: RunTool): Promise<VendorGpus> {
  const result = await run(NVIDIA_SMI, NVIDIA_GPU_ARGS);
  if (result.status !== 'ok') return notOk(NVIDIA_SMI, result, NO_DEVICES);
  const gpus = parseNvidiaGpus(result.stdout);
  const none = { tool: NVIDIA_SMI, result: result.status, failed: false, reason: null } as const;
  if (gpus.items.length === 0) return { ...none, ...counts(gpus), gpus: [], processes: [] };

  const apps = await run(NVIDIA_SMI, NVIDIA_APP_ARGS);
  if (apps.status !== 'ok') {
    const failure = notOk(NVIDIA_SMI, apps, NO_DEVICES);
    return { ...failure, ...counts(gpus), gpus: gpus.items, processes: null };
  }
  const processes = parseNvidiaApps(apps.stdout);
  return {
    ...none,
    skippedLines: gpus.skippedLines + processes.skippedLines,
    rejectedValues: gpus.rejectedValues + processes.rejectedValues,
    gpus: gpus.items,
    processes: processes.items,
  };
}

export async function collectAmd(run: RunTool): Promise<VendorGpus> {
  const result = await run(ROCM_SMI, ROCM_SMI_ARGS);
  if (result.status !== 'ok') return notOk(ROCM_SMI, result, NO_AMD_DRIVER);
  const parsed = parseRocmSmiJson(result.stdout);
  return {
    tool: ROCM_SMI,
    result: result.status,
    failed: false,
    reason: null,
    ...counts(parsed),
    gpus: parsed.gpus,
    processes: parsed.processes,
  };
}

function notOk(tool: GpuTool, result: Exclude<ToolResult, { status: 'ok' }>, noDevices: RegExp): VendorGpus {
  const reason =
    result.status === 'failed'
      ? result.reason
      : result.status === 'timeout'
        ? `${tool} timed out after ${result.timeoutMs} ms and was killed`
        : result.status === 'stuck'
          ? `${tool} has not exited since it was killed on a timeout`
          : null;
  const absent = result.status === 'missing' || (result.status === 'failed' && noDevices.test(result.reason));
  return {
    tool,
    result: result.status,
    failed: !absent,
    reason: absent ? null : reason,
    skippedLines: 0,
    rejectedValues: 0,
    gpus: [],
    processes: absent ? [] : null,
  };
}

function counts({ skippedLines, rejectedValues }: ParseCounts): ParseCounts {
  return { skippedLines, rejectedValues };
}
