import { describe, expect, it } from '@jest/globals';
import { buildAgentTelemetry, type TelemetryGpuSample, type TelemetrySample } from '@hearth/contracts';
import { describeGpus, IngestRows, JOB_END_SLACK_MS, type IngestBounds } from './ingest-rows.js';

const tenantId = '0190f3a4-5b6c-7d8e-9f00-000000000001';
const agentId = '0190f3a4-5b6c-7d8e-9f00-0000000000aa';
const MINE = '0190f3a4-5b6c-7d8e-9f00-00000000000b';
const NOT_MINE = '0190f3a4-5b6c-7d8e-9f00-00000000000c';
const OTHER_AGENT = '0190f3a4-5b6c-7d8e-9f00-0000000000bb';
const OTHER_TENANT = '0190f3a4-5b6c-7d8e-9f00-000000000002';
const t0 = Date.UTC(2026, 10, 21, 10);
const HOUR = 3_600_000;

/** Every sample in range; MINE runs on this agent since an hour before t0; nothing stored before. */
function bounds(overrides: Partial<IngestBounds> = {}): IngestBounds {
  return {
    minAt: t0 - HOUR,
    maxAt: t0 + HOUR,
    attempts: (job) => (job === MINE ? [{ tenantId, agentId, from: t0 - HOUR, until: null }] : []),
    storedBefore: () => null,
    ...overrides,
  };
}

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
      bounds({
        minAt: t0 - 60_000,
        maxAt: t0 + 60_000,
        // NOT_MINE ran on another agent of the tenant: not this one's to charge.
        attempts: (job) => [
          { tenantId, agentId: job === MINE ? agentId : OTHER_AGENT, from: t0 - HOUR, until: null },
        ],
      }),
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
    expect(rows.add({ tenantId, agentId, message }, bounds({ minAt: t0 + 1, maxAt: t0 + 2 }))).toBe(0);
    expect(rows.samples).toBe(0);
    expect(rows.gpuTables.size).toBe(0);
  });

  it('counts a sample for no more time than has passed since the agent’s previous one', () => {
    const rows = new IngestRows();
    const at = (ms: number) => ({ ...sample(ms), gpus: [gpu('nvidia', 0, null)] });
    // 1 s apart and out of order, each claiming a minute; one stored 2 s before the earliest.
    const burst = buildAgentTelemetry(agentId, [3000, 0, 1000, 1400, 1000, 100_000].map(at), 0, 60);
    const stored = bounds({ storedBefore: (a, first) => (a === agentId && first === t0 ? t0 - 2000 : null) });
    expect(rows.add({ tenantId, agentId, message: burst }, stored)).toBe(6);
    // Less than half a second after the previous: a second (the least the column holds); two
    // samples at the same time (one is stored): the same; 97 s after the previous: the interval.
    expect(rows.cols.interval).toEqual([2, 2, 1, 1, 1, 60]);

    // The next message in the batch: its first sample follows the last one of the burst, not yet stored.
    const next = buildAgentTelemetry(agentId, [130_000, 190_000].map(at), 0, 60);
    rows.add({ tenantId, agentId, message: next }, bounds());
    // Another agent's samples are not its previous ones: with none known, a sample stands for the
    // time to its next one, and alone, for the interval.
    const other = buildAgentTelemetry(OTHER_AGENT, [at(131_000), at(133_000)], 0, 60);
    rows.add({ tenantId, agentId: OTHER_AGENT, message: other }, bounds());
    const alone = buildAgentTelemetry(OTHER_AGENT, [at(300_000)], 0, 60);
    rows.add({ tenantId, agentId: OTHER_AGENT, message: alone }, bounds());
    // A previous sample longer ago than the interval is no measure: a new series, as above.
    const resumed = buildAgentTelemetry(OTHER_AGENT, [at(600_000), at(601_000)], 0, 60);
    rows.add({ tenantId, agentId: OTHER_AGENT, message: resumed }, bounds());
    expect(rows.cols.interval.slice(6)).toEqual([30, 60, 2, 2, 60, 1, 1]);

    // An agent keeping to its interval loses nothing.
    const steady = new IngestRows();
    const every5 = buildAgentTelemetry(agentId, [0, 5000, 10_000, 15_000].map(at), 0, 5);
    steady.add({ tenantId, agentId, message: every5 }, bounds({ storedBefore: () => t0 - 5000 }));
    expect(steady.cols.interval).toEqual([5, 5, 5, 5]);
  });

  it('charges a reading to a job only while an attempt of it ran on this agent, and keeps it', () => {
    const rows = new IngestRows();
    const end = t0 + 60_000;
    const attempts: IngestBounds['attempts'] = (job) =>
      job === MINE
        ? [
            { tenantId, agentId, from: t0, until: end },
            // Then it ran (runs) on another agent: not this one's time.
            { tenantId, agentId: OTHER_AGENT, from: end + 1000, until: null },
          ]
        : // Another organization's job, with this agent's id: never.
          [{ tenantId: OTHER_TENANT, agentId, from: t0 - HOUR, until: null }];
    const offsets = [-5000, 0, 30_000, 60_000 + JOB_END_SLACK_MS, 60_000 + JOB_END_SLACK_MS + 1000];
    const message = buildAgentTelemetry(agentId, offsets.map(sample), 0, 5);
    expect(rows.add({ tenantId, agentId, message }, bounds({ attempts }))).toBe(5);
    const held = `{${MINE},NULL}`;
    expect(rows.cols.gpuJob).toEqual(['{NULL,NULL}', held, held, held, '{NULL,NULL}']);
    expect(rows.cols.jobIds).toEqual(['{}', `{${MINE}}`, `{${MINE}}`, `{${MINE}}`, '{}']);
    // The hardware readings are all kept.
    expect(rows.cols.gpu).toEqual(Array(5).fill('{0,1024}'));
    expect(rows.gpuSamples).toBe(10);
    // Outside the run: MINE's GPU reading and CPU share in two samples. NOT_MINE: unknown.
    expect(rows.outsideRun).toBe(4);
    expect(rows.unknownJobs).toBe(1);
  });
});
