/**
 * Turns validated telemetry messages into the column arrays one multi-row INSERT takes (unnest of one
 * array per column; a sample's GPU readings are array literals, one element per GPU), and the GPUs'
 * descriptions. Read straight from the wire
 * tuples, without building a readable sample first. Pure: the writer decides which messages, agents
 * and jobs are acceptable; this only applies those decisions and counts what it leaves out.
 */
import type { AgentTelemetry, GpuVendorName, TelemetryGpuInfo } from '@hearth/contracts';

/** One accepted message with the tenant and agent its subject (and the agents table) vouch for. */
export interface IngestMessage {
  tenantId: string;
  agentId: string;
  message: AgentTelemetry;
}

export interface IngestBounds {
  /** Samples taken before this (ms since epoch) are older than raw retention. */
  minAt: number;
  /** Samples dated after this are from an agent whose clock is wrong. */
  maxAt: number;
  /** Whether a job may be attributed samples from this agent. */
  jobAllowed: (tenantId: string, agentId: string, jobId: string) => boolean;
}

/** One row of telemetry_gpus. */
export interface GpuDescription extends TelemetryGpuInfo {
  tenantId: string;
  agentId: string;
  gpu: number;
}

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
  /** Job references dropped because the job is not this agent's. */
  unknownJobs = 0;
  /** The newest sample time of each message added, for the lag metric. */
  readonly newest: number[] = [];

  get samples(): number {
    return this.cols.at.length;
  }

  /** Adds a message's samples; returns how many it kept. */
  add({ tenantId, agentId, message }: IngestMessage, bounds: IngestBounds): number {
    const jobs = message.jobs.map((id) => (bounds.jobAllowed(tenantId, agentId, id) ? id : null));
    const dropped = message.jobs.length - jobs.filter((j) => j !== null).length;
    const keys = message.gpus.map((g) => gpuKey(g.vendor, g.index));
    let kept = 0;
    let newest = -Infinity;
    let droppedBefore = Math.min(message.dropped, INT_MAX);
    const c = this.cols;
    for (const s of message.samples) {
      const at = Date.parse(s.at);
      if (!(at >= bounds.minAt && at <= bounds.maxAt)) {
        this.outOfRange++;
        continue;
      }
      kept++;
      newest = Math.max(newest, at);
      c.tenant.push(tenantId);
      c.agent.push(agentId);
      c.at.push(s.at);
      c.interval.push(message.intervalSeconds);
      c.cpu.push(s.cpuPct);
      c.memUsed.push(s.memory?.usedMiB ?? null);
      c.memTotal.push(s.memory?.totalMiB ?? null);
      c.diskRead.push(s.disk?.readBps ?? null);
      c.diskWrite.push(s.disk?.writeBps ?? null);
      c.netRx.push(s.net?.rxBps ?? null);
      c.netTx.push(s.net?.txBps ?? null);
      const running = s.jobs.filter(([job]) => jobs[job] !== null);
      c.jobIds.push(arrayLiteral(running.map(([job]) => jobs[job])));
      c.jobCpu.push(arrayLiteral(running.map(([, cpu]) => cpu)));
      c.droppedBefore.push(droppedBefore);
      droppedBefore = 0;
      c.skippedLines.push(Math.min(s.issues?.skippedLines ?? 0, INT_MAX));
      c.rejectedValues.push(Math.min(s.issues?.rejectedValues ?? 0, INT_MAX));
      c.failedTools.push(arrayLiteral(s.issues?.failedTools ?? []));
      const g = s.gpus;
      c.gpu.push(arrayLiteral(g.map((r) => keys[r[0]])));
      c.gpuJob.push(arrayLiteral(g.map((r) => (r[7] === null ? null : jobs[r[7]]))));
      c.gpuUtil.push(arrayLiteral(g.map((r) => r[1])));
      c.gpuMemUtil.push(arrayLiteral(g.map((r) => r[2])));
      c.gpuMemUsed.push(arrayLiteral(g.map((r) => r[3])));
      c.gpuPower.push(arrayLiteral(g.map((r) => r[4])));
      c.gpuTemperature.push(arrayLiteral(g.map((r) => r[5])));
      c.gpuClock.push(arrayLiteral(g.map((r) => r[6])));
      c.gpuForeign.push(arrayLiteral(g.map((r) => r[8])));
      this.gpuSamples += g.length;
    }
    if (kept > 0) {
      this.unknownJobs += dropped;
      this.newest.push(newest);
      this.gpuTables.set(agentId, { tenantId, gpus: message.gpus });
    }
    return kept;
  }
}
