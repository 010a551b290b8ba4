/**
 * Telemetry an agent sends up: batches of host and GPU samples, with the job that owns each GPU
 * and each running job's CPU share. Like every agent→control-plane schema, nothing here is
 * free-form: strings are bounded and every number has the range a real device can report, so an
 * impossible value (utilisation above 100 %, negative power) fails validation on both sides.
 *
 * Two shapes. `TelemetrySample` is the readable one the agent builds and the control plane reads.
 * `AgentTelemetry` is the wire message: what does not change between samples (a GPU's name,
 * uuid, memory size; a job's id) goes once per message in a table, and each sample refers to it
 * by position, with one short tuple per GPU. That keeps a full batch from an 8-GPU host well under
 * MAX_MESSAGE_BYTES. `buildAgentTelemetry` and `expandAgentTelemetry` convert between the two.
 */
import { z } from 'zod';
import { storableText } from './text.js';

/** Bounds shared by the agent's parsers (which reject what falls outside) and the schema. */
export const TELEMETRY_LIMITS = {
  /** GPUs in one sample. */
  maxGpus: 64,
  /** Distinct GPU descriptions in one message (a GPU whose power limit changes appears twice). */
  maxGpuEntries: 256,
  /** Running jobs in one sample, and distinct jobs in one message. */
  maxJobsPerSample: 256,
  maxJobsPerMessage: 1024,
  maxGpuIndex: 1023,
  /** 16 TiB, in MiB. */
  maxGpuMemoryMiB: 16 * 1024 * 1024,
  /** 1 PiB, in MiB. */
  maxHostMemoryMiB: 1024 * 1024 * 1024,
  maxPowerW: 5000,
  minTemperatureC: -40,
  maxTemperatureC: 150,
  maxClockMHz: 10_000,
  /** 10 TB/s: above any disk array or NIC a host has. */
  maxBytesPerSecond: 1e13,
  /** Linux's largest pid_max. */
  maxProcesses: 4_194_304,
  maxNameChars: 128,
  maxUuidChars: 96,
} as const;

/**
 * Samples in one message. A sample from a busy 8-GPU host (8 running jobs, every value at its
 * longest, issues reported) takes about 700 bytes, so a full batch stays under 75 % of
 * MAX_MESSAGE_BYTES (telemetry.spec.ts checks it). Hosts with more GPUs or jobs send fewer samples
 * per message: the sender fits each batch to the byte limit.
 */
export const TELEMETRY_MAX_BATCH = 64;

/** Seconds between samples: the agent's default, and the range it may be set to. */
export const TELEMETRY_INTERVAL = { default: 5, min: 1, max: 60 } as const;

const L = TELEMETRY_LIMITS;
const count = (max: number) => z.number().int().min(0).max(max);
const pct = z.number().min(0).max(100);
const watts = z.number().min(0).max(L.maxPowerW);
const celsius = z.number().min(L.minTemperatureC).max(L.maxTemperatureC);
const gpuMiB = count(L.maxGpuMemoryMiB);
const hostMiB = count(L.maxHostMemoryMiB);
const rate = count(L.maxBytesPerSecond);

export const GpuVendorName = z.enum(['nvidia', 'amd']);
export type GpuVendorName = z.infer<typeof GpuVendorName>;
/** The vendors' tools; a sample names the ones that failed (missing tools are not failures). */
export const GpuTool = z.enum(['nvidia-smi', 'rocm-smi']);
export type GpuTool = z.infer<typeof GpuTool>;

/** NVIDIA "GPU-…"/"MIG-…" uuids and AMD's "0x…" unique ids; never spaces or punctuation runs. */
export const GPU_UUID = /^[A-Za-z0-9][A-Za-z0-9_:-]*$/;

// ---- the readable shape -------------------------------------------------------------------

/** What a GPU is: constant from sample to sample (unless an admin changes its power limit or MIG). */
export interface TelemetryGpuInfo {
  vendor: GpuVendorName;
  /** The vendor tool's index (nvidia-smi index, rocm-smi card number). */
  index: number;
  uuid: string | null;
  name: string;
  memoryTotalMiB: number | null;
  powerLimitW: number | null;
  /** MIG mode (NVIDIA); null where the GPU has no MIG or the vendor has none. */
  mig: boolean | null;
}

export interface TelemetryGpuSample extends TelemetryGpuInfo {
  utilizationPct: number | null;
  memoryUtilizationPct: number | null;
  memoryUsedMiB: number | null;
  powerW: number | null;
  temperatureC: number | null;
  smClockMHz: number | null;
  /**
   * The Hearth job whose process tree runs on this GPU or, when none does, the job the agent assigned
   * the GPU to (held but unused is what idle detection looks for); null when neither.
   */
  jobId: string | null;
  /** Compute processes on this GPU that belong to no Hearth job; null when the tool cannot say. */
  foreignProcesses: number | null;
}

export interface TelemetrySample {
  at: string;
  /** Host CPU utilisation since the previous sample; null on the first. */
  cpuPct: number | null;
  memory: { usedMiB: number; totalMiB: number } | null;
  disk: { readBps: number; writeBps: number } | null;
  net: { rxBps: number; txBps: number } | null;
  gpus: TelemetryGpuSample[];
  /** Every running job, with its process tree's share of the host's CPU since the previous sample. */
  jobs: { jobId: string; cpuPct: number | null }[];
  /** Tool output the agent could not use while taking this sample. */
  issues: { skippedLines: number; rejectedValues: number; failedTools: GpuTool[] };
}

// ---- the wire shape -----------------------------------------------------------------------

export const TelemetryGpu = z
  .object({
    vendor: GpuVendorName,
    index: count(L.maxGpuIndex),
    uuid: z.string().max(L.maxUuidChars).regex(GPU_UUID).nullable(),
    name: storableText(L.maxNameChars),
    memoryTotalMiB: gpuMiB.nullable(),
    powerLimitW: watts.nullable(),
    mig: z.boolean().nullable(),
  })
  .strict();
export type TelemetryGpu = z.infer<typeof TelemetryGpu>;

/**
 * One GPU in one sample (each GPU at most once per sample), by position: [gpu (index into the message's `gpus`), utilizationPct,
 * memoryUtilizationPct, memoryUsedMiB, powerW, temperatureC, smClockMHz, job (index into the
 * message's `jobs`, or null), foreignProcesses].
 */
export const TelemetryGpuReading = z.tuple([
  count(L.maxGpuEntries - 1),
  pct.nullable(),
  pct.nullable(),
  gpuMiB.nullable(),
  watts.nullable(),
  celsius.nullable(),
  count(L.maxClockMHz).nullable(),
  count(L.maxJobsPerMessage - 1).nullable(),
  count(L.maxProcesses).nullable(),
]);
export type TelemetryGpuReading = z.infer<typeof TelemetryGpuReading>;

/** One running job in one sample: [job (index into the message's `jobs`), cpuPct]. */
export const TelemetryJobReading = z.tuple([count(L.maxJobsPerMessage - 1), pct.nullable()]);
export type TelemetryJobReading = z.infer<typeof TelemetryJobReading>;

export const TelemetryWireSample = z
  .object({
    at: z.iso.datetime(),
    cpuPct: pct.nullable(),
    memory: z.object({ usedMiB: hostMiB, totalMiB: hostMiB }).strict().nullable(),
    disk: z.object({ readBps: rate, writeBps: rate }).strict().nullable(),
    net: z.object({ rxBps: rate, txBps: rate }).strict().nullable(),
    gpus: z.array(TelemetryGpuReading).max(L.maxGpus),
    jobs: z.array(TelemetryJobReading).max(L.maxJobsPerSample),
    /** Absent when nothing was skipped, rejected or failed. */
    issues: z
      .object({
        skippedLines: count(2 ** 31),
        rejectedValues: count(2 ** 31),
        failedTools: z.array(GpuTool).max(2),
      })
      .strict()
      .optional(),
  })
  .strict();
export type TelemetryWireSample = z.infer<typeof TelemetryWireSample>;

export const AgentTelemetry = z
  .object({
    type: z.literal('agent.telemetry'),
    v: z.literal(1),
    agentId: z.uuid(),
    /**
     * Seconds between the agent's samples: each sample stands for that much time, which is how the
     * control plane turns samples into GPU-hours and energy (never more than the time since the
     * agent's previous sample, and never more than a minute of a GPU's or host's time per minute).
     */
    intervalSeconds: z.number().int().min(TELEMETRY_INTERVAL.min).max(TELEMETRY_INTERVAL.max),
    /** Samples the agent's buffer dropped (oldest first) since the previous message it sent. */
    dropped: count(2 ** 31),
    gpus: z.array(TelemetryGpu).max(L.maxGpuEntries),
    jobs: z.array(z.uuid()).max(L.maxJobsPerMessage),
    samples: z.array(TelemetryWireSample).min(1).max(TELEMETRY_MAX_BATCH),
  })
  .strict()
  .superRefine((message, ctx) => {
    message.samples.forEach((sample, s) => {
      // Each reading stands for the GPU's time in the sample: the same GPU twice would count it twice.
      const seen = new Set<string>();
      sample.gpus.forEach(([gpu, , , , , , , job], g) => {
        const entry = message.gpus.at(gpu);
        if (entry === undefined) {
          ctx.addIssue({ code: 'custom', path: ['samples', s, 'gpus', g, 0], message: 'unknown gpu' });
        } else if (seen.has(gpuIdentity(entry))) {
          const twice = `${entry.vendor} GPU ${entry.index} appears twice in the sample`;
          ctx.addIssue({ code: 'custom', path: ['samples', s, 'gpus', g, 0], message: twice });
        } else {
          seen.add(gpuIdentity(entry));
        }
        if (job !== null && job >= message.jobs.length) {
          ctx.addIssue({ code: 'custom', path: ['samples', s, 'gpus', g, 7], message: 'unknown job' });
        }
      });
      sample.jobs.forEach(([job], j) => {
        if (job >= message.jobs.length) {
          ctx.addIssue({ code: 'custom', path: ['samples', s, 'jobs', j, 0], message: 'unknown job' });
        }
      });
    });
  });
export type AgentTelemetry = z.infer<typeof AgentTelemetry>;

/**
 * Which GPU a reading is about: its vendor and the vendor tool's index, which is how the control plane
 * keys a host's GPUs (two table entries for one GPU, e.g. before and after a power limit change, are
 * the same GPU). Not the uuid: it is optional, and only as unique as the vendor's tool makes it; the
 * control plane counts GPUs by index, so a uuid seen twice under two indexes adds nothing a made-up
 * uuid could not, and refusing it would risk refusing every sample of a real host.
 */
function gpuIdentity(gpu: TelemetryGpu): string {
  return `${gpu.vendor}#${gpu.index}`;
}

// ---- conversion ---------------------------------------------------------------------------

/** Packs readable samples into one wire message (it does not validate: encode() does). */
export function buildAgentTelemetry(
  agentId: string,
  samples: readonly TelemetrySample[],
  dropped: number,
  intervalSeconds: number = TELEMETRY_INTERVAL.default,
): AgentTelemetry {
  const gpus = new Table<TelemetryGpu>((g) => JSON.stringify(g));
  const jobs = new Table<string>((id) => id);
  const wire = samples.map((sample): TelemetryWireSample => {
    const { skippedLines, rejectedValues, failedTools } = sample.issues;
    const clean = skippedLines === 0 && rejectedValues === 0 && failedTools.length === 0;
    return {
      at: sample.at,
      cpuPct: sample.cpuPct,
      memory: sample.memory,
      disk: sample.disk,
      net: sample.net,
      gpus: sample.gpus.map((g) => [
        gpus.ref(gpuInfo(g)),
        g.utilizationPct,
        g.memoryUtilizationPct,
        g.memoryUsedMiB,
        g.powerW,
        g.temperatureC,
        g.smClockMHz,
        g.jobId === null ? null : jobs.ref(g.jobId),
        g.foreignProcesses,
      ]),
      jobs: sample.jobs.map((j) => [jobs.ref(j.jobId), j.cpuPct]),
      ...(clean ? {} : { issues: { skippedLines, rejectedValues, failedTools: [...failedTools] } }),
    };
  });
  return {
    type: 'agent.telemetry',
    v: 1,
    agentId,
    intervalSeconds,
    dropped,
    gpus: gpus.values,
    jobs: jobs.values,
    samples: wire,
  };
}

/** Unpacks a validated wire message into readable samples. */
export function expandAgentTelemetry(message: AgentTelemetry): TelemetrySample[] {
  return message.samples.map((s) => ({
    at: s.at,
    cpuPct: s.cpuPct,
    memory: s.memory,
    disk: s.disk,
    net: s.net,
    gpus: s.gpus.map(([gpu, utilization, memUtil, memUsed, power, temperature, clock, job, foreign]) => ({
      ...message.gpus[gpu],
      utilizationPct: utilization,
      memoryUtilizationPct: memUtil,
      memoryUsedMiB: memUsed,
      powerW: power,
      temperatureC: temperature,
      smClockMHz: clock,
      jobId: job === null ? null : message.jobs[job],
      foreignProcesses: foreign,
    })),
    jobs: s.jobs.map(([job, cpuPct]) => ({ jobId: message.jobs[job], cpuPct })),
    issues: s.issues ?? { skippedLines: 0, rejectedValues: 0, failedTools: [] },
  }));
}

function gpuInfo(g: TelemetryGpuSample): TelemetryGpu {
  return {
    vendor: g.vendor,
    index: g.index,
    uuid: g.uuid,
    name: g.name,
    memoryTotalMiB: g.memoryTotalMiB,
    powerLimitW: g.powerLimitW,
    mig: g.mig,
  };
}

/** Distinct values in first-seen order, each referred to by its position. */
class Table<T> {
  readonly values: T[] = [];
  private readonly positions = new Map<string, number>();

  constructor(private readonly key: (value: T) => string) {}

  ref(value: T): number {
    const key = this.key(value);
    let position = this.positions.get(key);
    if (position === undefined) {
      position = this.values.push(value) - 1;
      this.positions.set(key, position);
    }
    return position;
  }
}
