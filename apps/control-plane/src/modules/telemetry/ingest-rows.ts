/**
 * Turns validated telemetry messages into the column arrays one multi-row INSERT takes (unnest of one
 * array per column; a sample's GPU readings are array literals, one element per GPU), and the GPUs'
 * descriptions. Read straight from the wire
 * tuples, without building a readable sample first. Pure: the writer decides which messages and
 * agents are acceptable and looks up the jobs' attempts and the agents' latest stored samples; this
 * applies them and counts what it leaves out.
 *
 * Agents are untrusted, so two things are not taken on their word:
 * - how long a sample stands for (its `interval_s`, what GPU-hours and energy are summed from): the
 *   message's intervalSeconds, but never more than the time since the agent's previous sample (in the
 *   message, earlier in the batch, or already stored; for the first of a series, the time to the
 *   next), so samples sent closer together than they claim cannot multiply the time. Whole seconds,
 *   at least one (the column's unit and range): what samples less than a second apart could still
 *   add, the rollup's cap of 60 s per GPU and minute takes away, as it does for samples sent one per
 *   message, newest first (each finds no earlier one);
 * - which job a GPU reading (or a job's CPU share) is charged to: the job it names only if the sample
 *   was taken during an attempt of that job on this agent, from its start (its dispatch while not
 *   started) to its end plus JOB_END_SLACK_MS, open-ended while it is active. Otherwise the reading
 *   is kept with no job: the hardware was in use, but not (provably) by that job.
 */
import {
  TELEMETRY_INTERVAL,
  type AgentTelemetry,
  type GpuVendorName,
  type TelemetryGpuInfo,
} from '@hearth/contracts';

/** One accepted message with the tenant and agent its subject (and the agents table) vouch for. */
export interface IngestMessage {
  tenantId: string;
  agentId: string;
  message: AgentTelemetry;
}

/** An attempt of a job as the jobs module records it; times in ms since epoch. */
export interface JobAttemptSpan {
  tenantId: string;
  agentId: string;
  /** When it started, or was dispatched if it has not started. */
  from: number;
  /** When it ended; null while it is active. */
  until: number | null;
}

export interface IngestBounds {
  /** Samples taken before this (ms since epoch) are older than raw retention. */
  minAt: number;
  /** Samples dated after this are from an agent whose clock is wrong. */
  maxAt: number;
  /** The attempts of a job, on any agent; none for a job that does not exist. */
  attempts: (jobId: string) => readonly JobAttemptSpan[];
  /**
   * The time of the agent's latest stored sample before `at` (the message's earliest sample kept, see
   * earliestKept), if it is less than the longest interval older; null when there is none.
   */
  storedBefore: (agentId: string, at: number) => number | null;
}

/** One row of telemetry_gpus. */
export interface GpuDescription extends TelemetryGpuInfo {
  tenantId: string;
  agentId: string;
  gpu: number;
}

/**
 * How long after an attempt ended its agent's samples may still name its job: the agent's clock may
 * run ahead of the control plane's, and the end is recorded when the agent's report arrives.
 */
export const JOB_END_SLACK_MS = 2 * TELEMETRY_INTERVAL.max * 1000;

/** Postgres integer columns hold up to 2^31 - 1; the contract allows counts up to 2^31. */
const INT_MAX = 2 ** 31 - 1;
const AMD_GPU_OFFSET = 1024;

/** A GPU's key on its host: the vendor tool's index, AMD after NVIDIA (they number independently). */
export function gpuKey(vendor: GpuVendorName, index: number): number {
  return vendor === 'amd' ? AMD_GPU_OFFSET + index : index;
}

/** The rows of telemetry_gpus an agent's GPU table makes (a GPU listed twice: its last entry). */
export function describeGpus(
  tenantId: string,
  agentId: string,
  gpus: AgentTelemetry['gpus'],
): GpuDescription[] {
  const rows = new Map<number, GpuDescription>();
  for (const d of gpus) {
    const gpu = gpuKey(d.vendor, d.index);
    rows.set(gpu, { tenantId, agentId, gpu, ...d });
  }
  return [...rows.values()];
}

/** The sample times (ms) of a message, null for those outside [minAt, maxAt] (which are left out). */
export function sampleTimes(
  message: AgentTelemetry,
  { minAt, maxAt }: Pick<IngestBounds, 'minAt' | 'maxAt'>,
): (number | null)[] {
  return message.samples.map((s) => {
    const at = Date.parse(s.at);
    return at >= minAt && at <= maxAt ? at : null;
  });
}

/**
 * The time (ms) of the earliest sample of a message kept (see sampleTimes), where the writer looks
 * for the agent's stored sample before it; null when none is kept.
 */
export function earliestKept(times: readonly (number | null)[]): number | null {
  const kept = times.filter((t) => t !== null);
  return kept.length > 0 ? Math.min(...kept) : null;
}

/** A Postgres array literal of uuids or numbers (values the contract has already checked). */
function arrayLiteral(values: readonly (string | number | null)[]): string {
  return `{${values.map((v) => (v === null ? 'NULL' : String(v))).join(',')}}`;
}

export class IngestRows {
  /** One entry per sample (row); GPU readings are array literals, one element per GPU. */
  readonly cols = {
    tenant: [] as string[],
    agent: [] as string[],
    at: [] as string[],
    interval: [] as number[],
    cpu: [] as (number | null)[],
    memUsed: [] as (number | null)[],
    memTotal: [] as (number | null)[],
    diskRead: [] as (number | null)[],
    diskWrite: [] as (number | null)[],
    netRx: [] as (number | null)[],
    netTx: [] as (number | null)[],
    jobIds: [] as string[],
    jobCpu: [] as string[],
    droppedBefore: [] as number[],
    skippedLines: [] as number[],
    rejectedValues: [] as number[],
    failedTools: [] as string[],
    gpu: [] as string[],
    gpuJob: [] as string[],
    gpuUtil: [] as string[],
    gpuMemUtil: [] as string[],
    gpuMemUsed: [] as string[],
    gpuPower: [] as string[],
    gpuTemperature: [] as string[],
    gpuClock: [] as string[],
    gpuForeign: [] as string[],
  };
  /** Each agent's latest GPU table (as its message has it), by agent id. */
  readonly gpuTables = new Map<string, { tenantId: string; gpus: AgentTelemetry['gpus'] }>();
  /** GPU readings in the rows. */
  gpuSamples = 0;
  /** Samples left out for being outside the accepted time range. */
  outOfRange = 0;
  /** Job references dropped because this agent ran no attempt of the job (or it is another tenant's). */
  unknownJobs = 0;
  /** Job references (GPU readings, job CPU shares) dropped because the sample lies outside the job's run. */
  outsideRun = 0;
  /** The newest sample time of each message added, for the lag metric. */
  readonly newest: number[] = [];
  /** The newest sample time added for each agent: the previous sample of a later message's first. */
  private readonly latest = new Map<string, number>();

  get samples(): number {
    return this.cols.at.length;
  }

  /** Adds a message's samples (`times`: their sampleTimes, if already parsed); returns how many it kept. */
  add(
    { tenantId, agentId, message }: IngestMessage,
    bounds: IngestBounds,
    times: readonly (number | null)[] = sampleTimes(message, bounds),
  ): number {
    // By the message's job positions: this agent's attempts of the job, null when it has none.
    const runs = message.jobs.map((id) => {
      const mine = bounds.attempts(id).filter((a) => a.tenantId === tenantId && a.agentId === agentId);
      return mine.length > 0 ? mine : null;
    });
    const dropped = runs.filter((r) => r === null).length;
    const jobAt = (job: number | null, at: number): string | null => {
      const mine = job === null ? null : runs[job];
      if (job === null || mine === null) return null;
      if (mine.some((a) => at >= a.from && (a.until === null || at <= a.until + JOB_END_SLACK_MS)))
        return message.jobs[job];
      this.outsideRun++;
      return null;
    };
    const seconds = this.weigh(agentId, message, times, bounds);
    const keys = message.gpus.map((g) => gpuKey(g.vendor, g.index));
    let kept = 0;
    let newest = -Infinity;
    let droppedBefore = Math.min(message.dropped, INT_MAX);
    const c = this.cols;
    message.samples.forEach((s, i) => {
      const at = times[i];
      if (at === null) {
        this.outOfRange++;
        return;
      }
      kept++;
      newest = Math.max(newest, at);
      c.tenant.push(tenantId);
      c.agent.push(agentId);
      c.at.push(s.at);
      c.interval.push(seconds[i]);
      c.cpu.push(s.cpuPct);
      c.memUsed.push(s.memory?.usedMiB ?? null);
      c.memTotal.push(s.memory?.totalMiB ?? null);
      c.diskRead.push(s.disk?.readBps ?? null);
      c.diskWrite.push(s.disk?.writeBps ?? null);
      c.netRx.push(s.net?.rxBps ?? null);
      c.netTx.push(s.net?.txBps ?? null);
      const running = s.jobs.flatMap(([job, cpu]) => {
        const id = jobAt(job, at);
        return id === null ? [] : [[id, cpu] as const];
      });
      c.jobIds.push(arrayLiteral(running.map(([id]) => id)));
      c.jobCpu.push(arrayLiteral(running.map(([, cpu]) => cpu)));
      c.droppedBefore.push(droppedBefore);
      droppedBefore = 0;
      c.skippedLines.push(Math.min(s.issues?.skippedLines ?? 0, INT_MAX));
      c.rejectedValues.push(Math.min(s.issues?.rejectedValues ?? 0, INT_MAX));
      c.failedTools.push(arrayLiteral(s.issues?.failedTools ?? []));
      const g = s.gpus;
      c.gpu.push(arrayLiteral(g.map((r) => keys[r[0]])));
      c.gpuJob.push(arrayLiteral(g.map((r) => jobAt(r[7], at))));
      c.gpuUtil.push(arrayLiteral(g.map((r) => r[1])));
      c.gpuMemUtil.push(arrayLiteral(g.map((r) => r[2])));
      c.gpuMemUsed.push(arrayLiteral(g.map((r) => r[3])));
      c.gpuPower.push(arrayLiteral(g.map((r) => r[4])));
      c.gpuTemperature.push(arrayLiteral(g.map((r) => r[5])));
      c.gpuClock.push(arrayLiteral(g.map((r) => r[6])));
      c.gpuForeign.push(arrayLiteral(g.map((r) => r[8])));
      this.gpuSamples += g.length;
    });
    if (kept > 0) {
      this.unknownJobs += dropped;
      this.newest.push(newest);
      this.latest.set(agentId, Math.max(newest, this.latest.get(agentId) ?? -Infinity));
      this.gpuTables.set(agentId, { tenantId, gpus: message.gpus });
    }
    return kept;
  }

  /**
   * The seconds each kept sample (by position; `times` null: not kept) stands for: the message's
   * interval, or the whole seconds since the agent's previous sample if fewer (at least one). The
   * previous sample is the latest earlier one in the message (whatever their order), earlier in
   * this batch, or stored before the message's earliest kept one. A sample with no previous one
   * within the interval (the first of a series) stands for the time to its next one in the message
   * if that is shorter: a series claims no more time than separates its samples.
   */
  private weigh(
    agentId: string,
    message: AgentTelemetry,
    times: readonly (number | null)[],
    bounds: IngestBounds,
  ): number[] {
    const interval = message.intervalSeconds;
    const first = earliestKept(times);
    const stored = first === null ? null : bounds.storedBefore(agentId, first);
    const outside = [stored, this.latest.get(agentId) ?? null];
    const sorted = times.flatMap((at, i) => (at === null ? [] : [{ at, i }])).sort((x, y) => x.at - y.at);
    const seconds = times.map(() => interval);
    const upTo = (ms: number) => Math.min(interval, Math.max(1, Math.round(ms / 1000)));
    let inMessage: number | null = null;
    let previous: number | null = null;
    for (const { at, i } of sorted) {
      if (previous !== null && previous < at) inMessage = previous;
      previous = at;
      const before = Math.max(...[inMessage, ...outside].map((t) => (t !== null && t < at ? t : -Infinity)));
      const next = sorted.find((s) => s.at > at)?.at ?? Infinity;
      // Since the previous sample if that is recent; if not (or none is known), as long as to the next.
      seconds[i] = upTo(at - before < interval * 1000 ? at - before : next - at);
    }
    return seconds;
  }
}
