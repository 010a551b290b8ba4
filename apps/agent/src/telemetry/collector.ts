/**
 * The TelemetryCollector takes one sample at a time: host CPU, memory, disk and network from
 * /proc, every NVIDIA and AMD GPU, the job that owns each GPU, and each running job's CPU share.
 * Rates and shares are differences from the previous sample, so the first sample has them null.
 * Call sample() from one loop, one call at a time.
 */
import {
  TELEMETRY_LIMITS,
  type GpuTool,
  type GpuVendorName,
  type TelemetryGpuSample,
  type TelemetrySample,
} from '@hearth/contracts';
import { collectAmd, collectNvidia, type VendorGpus } from './gpu-collector.js';
import type { GpuProcess, GpuReading } from './gpu-reading.js';
import {
  cpuPercent,
  perSecond,
  readProcSnapshot,
  type CpuTimes,
  type DiskCounters,
  type NetCounters,
} from './procfs.js';
import {
  cpuShare,
  jobOwners,
  jobTicks,
  readProcessTable,
  type ProcessStat,
  type RunningJob,
} from './process-tree.js';
import { createToolRunner, type RunTool, type ToolResult } from './tool-runner.js';

export interface GpuRef {
  vendor: GpuVendorName;
  index: number;
  uuid: string | null;
}

export interface TelemetryCollectorOptions {
  /** The running jobs and their root processes, read at each sample. */
  runningJobs: () => Iterable<RunningJob>;
  /**
   * The job the agent assigned a GPU to (GpuAllocator.ownerOf). rocm-smi says which processes use
   * AMD GPUs but not which GPU each uses: an AMD GPU is attributed to the job assigned it when a
   * process of that job uses a GPU.
   */
  assignedJob?: (gpu: GpuRef) => string | null;
  runTool?: RunTool;
  /** Default /proc. */
  procRoot?: string;
  /** Monotonic milliseconds, for rates. */
  clock?: () => number;
  now?: () => Date;
}

/** Since the collector was made: what a log line or a metrics endpoint shows. */
export interface CollectorCounters {
  samples: number;
  skippedLines: number;
  rejectedValues: number;
  toolTimeouts: number;
  toolFailures: number;
}

export interface ToolReport {
  result: ToolResult['status'];
  /** Why the tool's GPUs are missing from the last sample; null when they are not. */
  reason: string | null;
}

interface Previous {
  at: number;
  cpu: CpuTimes | null;
  disk: DiskCounters | null;
  net: NetCounters | null;
  jobTicks: Map<string, number>;
}

const L = TELEMETRY_LIMITS;

export class TelemetryCollector {
  readonly counters: CollectorCounters = {
    samples: 0,
    skippedLines: 0,
    rejectedValues: 0,
    toolTimeouts: 0,
    toolFailures: 0,
  };
  /** What each tool answered in the last sample. */
  readonly tools: Record<GpuTool, ToolReport> = {
    'nvidia-smi': { result: 'missing', reason: null },
    'rocm-smi': { result: 'missing', reason: null },
  };
  private previous: Previous | null = null;
  private readonly runTool: RunTool;
  private readonly clock: () => number;
  private readonly now: () => Date;

  constructor(private readonly options: TelemetryCollectorOptions) {
    this.runTool = options.runTool ?? createToolRunner();
    this.clock = options.clock ?? (() => performance.now());
    this.now = options.now ?? (() => new Date());
  }

  async sample(): Promise<TelemetrySample> {
    const at = this.now().toISOString();
    const jobs = [...this.options.runningJobs()];
    const [nvidia, amd, [host, elapsed], table] = await Promise.all([
      collectNvidia(this.runTool),
      collectAmd(this.runTool),
      readProcSnapshot(this.options.procRoot).then((snapshot) => [snapshot, this.clock()] as const),
      readProcessTable(this.options.procRoot).catch(() => new Map<number, ProcessStat>()),
    ]);
    const owners = jobOwners(table, jobs);
    const ticks = jobTicks(table, owners);
    const before = this.previous;
    const seconds = before ? (elapsed - before.at) / 1000 : 0;
    const hostTicks = before?.cpu && host.cpu ? host.cpu.total - before.cpu.total : null;
    this.previous = { at: elapsed, cpu: host.cpu, disk: host.disk, net: host.net, jobTicks: ticks };

    // Host values beyond any real machine (a counter glitch) are rejected like a GPU's.
    let rejectedValues = nvidia.rejectedValues + amd.rejectedValues;
    const reject = () => {
      rejectedValues++;
      return null;
    };
    const rates = <K extends string>(
      then: ReadonlyMap<string, Record<K, number>> | null | undefined,
      now: ReadonlyMap<string, Record<K, number>> | null,
      keys: readonly K[],
    ): Record<K, number> | null => {
      const result = then && now ? perSecond(then, now, seconds, keys) : null;
      return result && keys.some((k) => result[k] > L.maxBytesPerSecond) ? reject() : result;
    };
    const disk = rates(before?.disk, host.disk, ['read', 'write'] as const);
    const net = rates(before?.net, host.net, ['rx', 'tx'] as const);
    const memory = host.memory && host.memory.totalMiB > L.maxHostMemoryMiB ? reject() : host.memory;
    const sample: TelemetrySample = {
      at,
      cpuPct: before?.cpu && host.cpu ? cpuPercent(before.cpu, host.cpu) : null,
      memory,
      disk: disk && { readBps: disk.read, writeBps: disk.write },
      net: net && { rxBps: net.rx, txBps: net.tx },
      gpus: [
        ...nvidia.gpus.map((gpu) => this.nvidiaGpu(gpu, nvidia.processes, owners)),
        ...amd.gpus.map((gpu) => this.amdGpu(gpu, amd.processes, owners)),
      ].slice(0, L.maxGpus),
      jobs: jobs.slice(0, L.maxJobsPerSample).map(({ jobId }) => ({
        jobId,
        cpuPct: cpuShare(before?.jobTicks.get(jobId), ticks.get(jobId), hostTicks),
      })),
      issues: {
        skippedLines: nvidia.skippedLines + amd.skippedLines,
        rejectedValues,
        failedTools: [nvidia, amd].filter((v) => v.failed).map((v) => v.tool),
      },
    };
    this.count(sample, [nvidia, amd]);
    return sample;
  }

  /** The job with the most GPU memory among the processes on it; the others count as foreign. */
  private nvidiaGpu(
    gpu: GpuReading,
    processes: readonly GpuProcess[] | null,
    owners: ReadonlyMap<number, string | null>,
  ): TelemetryGpuSample {
    if (processes === null || gpu.uuid === null) return { ...gpu, jobId: null, foreignProcesses: null };
    const memory = new Map<string, number>();
    let foreign = 0;
    for (const p of processes) {
      if (p.gpuUuid !== gpu.uuid) continue;
      const job = owners.get(p.pid) ?? null;
      if (job === null) foreign++;
      else memory.set(job, (memory.get(job) ?? 0) + (p.usedMemoryMiB ?? 0));
    }
    let jobId: string | null = null;
    for (const [job, used] of memory) if (jobId === null || used > (memory.get(jobId) ?? 0)) jobId = job;
    return { ...gpu, jobId, foreignProcesses: Math.min(foreign, L.maxProcesses) };
  }

  private amdGpu(
    gpu: GpuReading,
    processes: readonly GpuProcess[] | null,
    owners: ReadonlyMap<number, string | null>,
  ): TelemetryGpuSample {
    const assigned = this.options.assignedJob?.(gpu) ?? null;
    const running = assigned !== null && !!processes?.some((p) => owners.get(p.pid) === assigned);
    return { ...gpu, jobId: running ? assigned : null, foreignProcesses: null };
  }

  private count(sample: TelemetrySample, vendors: readonly VendorGpus[]): void {
    this.counters.samples++;
    this.counters.skippedLines += sample.issues.skippedLines;
    this.counters.rejectedValues += sample.issues.rejectedValues;
    for (const v of vendors) {
      if (v.result === 'timeout' || v.result === 'stuck') this.counters.toolTimeouts++;
      else if (v.failed) this.counters.toolFailures++;
      this.tools[v.tool] = { result: v.result, reason: v.reason };
    }
  }
}
