import { describe, expect, it } from '@jest/globals';
import { buildAgentTelemetry, type TelemetryGpuSample, type TelemetrySample } from '@hearth/contracts';
import { describeGpus, IngestRows } from './ingest-rows.js';

const tenantId = '0190f3a4-5b6c-7d8e-9f00-000000000001';
const agentId = '0190f3a4-5b6c-7d8e-9f00-0000000000aa';
const MINE = '0190f3a4-5b6c-7d8e-9f00-00000000000b';
const NOT_MINE = '0190f3a4-5b6c-7d8e-9f00-00000000000c';
const t0 = Date.UTC(2026, 10, 21, 10);

function gpu(vendor: 'nvidia' | 'amd', index: number, jobId: string | null): TelemetryGpuSample {
  return {
    vendor,
    index,
    uuid: null,
    name: vendor === 'amd' ? 'AMD Instinct MI300X' : 'NVIDIA H100 80GB HBM3',
    memoryTotalMiB: 1000,
    powerLimitW: 700,
    mig: null,
    utilizationPct: 50.5,
    memoryUtilizationPct: null,
    memoryUsedMiB: 10,
    powerW: 300,
    temperatureC: 60,
    smClockMHz: 1980,
    jobId,
    foreignProcesses: null,
  };
}

function sample(offsetMs: number): TelemetrySample {
  return {
    at: new Date(t0 + offsetMs).toISOString(),
    cpuPct: 10,
    memory: { usedMiB: 1, totalMiB: 2 },
    disk: null,
    net: null,
    gpus: [gpu('nvidia', 0, MINE), gpu('amd', 0, NOT_MINE)],
    jobs: [
      { jobId: MINE, cpuPct: 5 },
      { jobId: NOT_MINE, cpuPct: 7 },
    ],
    issues: { skippedLines: 1, rejectedValues: 0, failedTools: ['rocm-smi'] },
  };
}

describe('IngestRows', () => {
  it('keeps the samples in range, one row each with its GPUs as arrays, and only this agent’s jobs', () => {
    const rows = new IngestRows();
    const message = buildAgentTelemetry(agentId, [sample(-3_600_000), sample(0), sample(5000)], 4, 5);
    const kept = rows.add(
      { tenantId, agentId, message },
      { minAt: t0 - 60_000, maxAt: t0 + 60_000, jobAllowed: (_t, _a, job) => job === MINE },
    );
    expect(kept).toBe(2);
    expect(rows.outOfRange).toBe(1);
    expect(rows.unknownJobs).toBe(1);
    expect(rows.gpuSamples).toBe(4);
    expect(rows.cols.at).toEqual([new Date(t0).toISOString(), new Date(t0 + 5000).toISOString()]);
    expect(rows.cols.interval).toEqual([5, 5]);
    // The drop count goes with the first sample kept.
    expect(rows.cols.droppedBefore).toEqual([4, 0]);
    // AMD GPUs are keyed after NVIDIA ones; a job not this agent's is dropped from the sample.
    expect(rows.cols.gpu).toEqual(['{0,1024}', '{0,1024}']);
    expect(rows.cols.gpuJob).toEqual([`{${MINE},NULL}`, `{${MINE},NULL}`]);
    expect(rows.cols.jobIds).toEqual([`{${MINE}}`, `{${MINE}}`]);
    expect(rows.cols.jobCpu).toEqual(['{5}', '{5}']);
    expect(rows.cols.gpuMemUtil).toEqual(['{NULL,NULL}', '{NULL,NULL}']);
    expect(rows.cols.failedTools).toEqual(['{rocm-smi}', '{rocm-smi}']);
    const table = rows.gpuTables.get(agentId)!;
    expect(describeGpus(tenantId, agentId, table.gpus).map((d) => [d.gpu, d.vendor, d.index])).toEqual([
      [0, 'nvidia', 0],
      [1024, 'amd', 0],
    ]);
    expect(rows.newest).toEqual([t0 + 5000]);
  });

  it('adds nothing for a message none of whose samples is in range', () => {
    const rows = new IngestRows();
    const message = buildAgentTelemetry(agentId, [sample(0)], 0, 5);
    expect(
      rows.add({ tenantId, agentId, message }, { minAt: t0 + 1, maxAt: t0 + 2, jobAllowed: () => true }),
    ).toBe(0);
    expect(rows.samples).toBe(0);
    expect(rows.gpuTables.size).toBe(0);
  });
});
