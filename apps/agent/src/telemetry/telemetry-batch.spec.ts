import { describe, expect, it } from '@jest/globals';
import {
  AgentTelemetry,
  encode,
  MAX_MESSAGE_BYTES,
  TELEMETRY_MAX_BATCH,
  type TelemetryGpuSample,
  type TelemetrySample,
} from '@hearth/contracts';
import { SampleBuffer } from './sample-buffer.js';
import { takeTelemetryBatch } from './telemetry-batch.js';

const agentId = '0190f3a4-5b6c-7d8e-9f00-112233445566';

function gpu(index: number, name = 'NVIDIA H100 80GB HBM3'): TelemetryGpuSample {
  return {
    vendor: 'nvidia',
    index,
    uuid: `GPU-5d6a1f2e-3b4c-4d5e-8f60-${index.toString().padStart(12, '0')}`,
    name,
    memoryTotalMiB: 81559,
    powerLimitW: 700,
    mig: false,
    utilizationPct: 97,
    memoryUtilizationPct: 61,
    memoryUsedMiB: 78215,
    powerW: 612.9,
    temperatureC: 71,
    smClockMHz: 1980,
    jobId: null,
    foreignProcesses: 0,
  };
}

function sample(i: number, gpus: TelemetryGpuSample[]): TelemetrySample {
  return {
    at: new Date(Date.UTC(2026, 10, 21, 10, 0, 0) + i * 10_000).toISOString(),
    cpuPct: 12.5,
    memory: { usedMiB: 1000, totalMiB: 2000 },
    disk: null,
    net: null,
    gpus,
    jobs: [],
    issues: { skippedLines: 0, rejectedValues: 0, failedTools: [] },
  };
}

const eight = Array.from({ length: 8 }, (_, i) => gpu(i));

describe('takeTelemetryBatch', () => {
  it('sends nothing from an empty buffer; drops go with the next message', () => {
    const buffer = new SampleBuffer<TelemetrySample>(1);
    expect(takeTelemetryBatch(buffer, agentId)).toBeNull();
    buffer.push(sample(0, []));
    buffer.push(sample(1, [])); // the buffer is full: sample 0 is dropped
    const taken = takeTelemetryBatch(buffer, agentId);
    expect(taken?.message.dropped).toBe(1);
    expect(taken?.message.samples.map((s) => s.at)).toEqual([sample(1, []).at]);
  });

  it('backfills oldest first, a full batch at a time', () => {
    const buffer = new SampleBuffer<TelemetrySample>(1000);
    for (let i = 0; i < 150; i++) buffer.push(sample(i, eight));
    const first = takeTelemetryBatch(buffer, agentId);
    expect(first?.message.samples).toHaveLength(TELEMETRY_MAX_BATCH);
    expect(first?.message.samples[0].at).toBe(sample(0, []).at);
    expect(buffer.size).toBe(150 - TELEMETRY_MAX_BATCH);
    expect(() => encode(AgentTelemetry, first!.message)).not.toThrow();
  });

  it('sends fewer samples per message from a host too big for a full batch', () => {
    const buffer = new SampleBuffer<TelemetrySample>(1000);
    const many = Array.from({ length: 64 }, (_, i) => gpu(i, `NVIDIA H100 80GB HBM3 ${'x'.repeat(100)}`));
    for (let i = 0; i < TELEMETRY_MAX_BATCH; i++) buffer.push(sample(i, many));
    const taken = takeTelemetryBatch(buffer, agentId)!;
    const size = encode(AgentTelemetry, taken.message).byteLength;
    expect(size).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(taken.message.samples.length).toBeLessThan(TELEMETRY_MAX_BATCH);
    expect(taken.message.samples.length + buffer.size).toBe(TELEMETRY_MAX_BATCH);
    // What did not fit comes next, in order.
    const next = takeTelemetryBatch(buffer, agentId)!;
    expect(next.message.samples[0].at).toBe(sample(taken.message.samples.length, []).at);
  });

  it('lets a failed send put its batch back, in order and with its drops', () => {
    const buffer = new SampleBuffer<TelemetrySample>(3);
    for (let i = 0; i < 4; i++) buffer.push(sample(i, eight));
    const failed = takeTelemetryBatch(buffer, agentId)!;
    expect(failed.message.dropped).toBe(1);
    buffer.putBack(failed.batch);
    const retry = takeTelemetryBatch(buffer, agentId)!;
    expect(retry.message).toEqual(failed.message);
  });
});
