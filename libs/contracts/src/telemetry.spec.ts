import { describe, expect, it } from '@jest/globals';
import { decode, encode, MAX_MESSAGE_BYTES } from './messages.js';
import {
  AgentTelemetry,
  buildAgentTelemetry,
  expandAgentTelemetry,
  TELEMETRY_MAX_BATCH,
  type TelemetryGpuSample,
  type TelemetrySample,
} from './telemetry.js';

const agentId = '0190f3a4-5b6c-7d8e-9f00-112233445566';
const jobIds = Array.from(
  { length: 8 },
  (_, i) => `0190f3a4-5b6c-7d8e-9f00-1122334455${(10 + i).toString()}`,
);
const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

/** An H200 at its busiest: every number at the most digits a real one prints. */
function gpu(index: number, overrides: Partial<TelemetryGpuSample> = {}): TelemetryGpuSample {
  return {
    vendor: 'nvidia',
    index,
    uuid: `GPU-5d6a1f2e-3b4c-4d5e-8f60-71829304a5b${index}`,
    name: 'NVIDIA H200 141GB HBM3e',
    memoryTotalMiB: 143771,
    powerLimitW: 700,
    mig: false,
    utilizationPct: 99.5,
    memoryUtilizationPct: 87.5,
    memoryUsedMiB: 143011,
    powerW: 699.9,
    temperatureC: 84.5,
    smClockMHz: 1980,
    jobId: jobIds[index],
    foreignProcesses: 12,
    ...overrides,
  };
}

function sample(second: number, gpus = Array.from({ length: 8 }, (_, i) => gpu(i))): TelemetrySample {
  return {
    at: new Date(Date.UTC(2026, 10, 21, 10, 0, second, 123)).toISOString(),
    cpuPct: 99.9,
    memory: { usedMiB: 2_063_719, totalMiB: 2_063_720 },
    disk: { readBps: 12_345_678_901, writeBps: 12_345_678_901 },
    net: { rxBps: 99_999_999_999, txBps: 99_999_999_999 },
    gpus,
    jobs: jobIds.map((jobId) => ({ jobId, cpuPct: 12.3 })),
    issues: { skippedLines: 0, rejectedValues: 0, failedTools: [] },
  };
}

const worst = (second: number): TelemetrySample => ({
  ...sample(second),
  issues: { skippedLines: 99_999, rejectedValues: 99_999, failedTools: ['nvidia-smi', 'rocm-smi'] },
});

describe('agent telemetry', () => {
  it('round-trips readable samples through the wire', () => {
    const samples = [
      sample(0),
      {
        ...sample(10, [gpu(0, { utilizationPct: null, powerW: null, mig: true, jobId: null })]),
        cpuPct: null,
        disk: null,
        jobs: [],
        issues: { skippedLines: 2, rejectedValues: 1, failedTools: ['rocm-smi' as const] },
      },
    ];
    const result = decode(AgentTelemetry, encode(AgentTelemetry, buildAgentTelemetry(agentId, samples, 3)));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.dropped).toBe(3);
    expect(expandAgentTelemetry(result.value)).toEqual(samples);
  });

  it('sends what does not change once per message', () => {
    const message = buildAgentTelemetry(agentId, [sample(0), sample(10), sample(20)], 0);
    expect(message.gpus).toHaveLength(8);
    expect(message.jobs).toEqual(jobIds);
    expect(message.samples[2].gpus[3]).toEqual([3, 99.5, 87.5, 143011, 699.9, 84.5, 1980, 3, 12]);
    expect(message.samples[0]).not.toHaveProperty('issues');
  });

  it('fits a full batch from a busy 8-GPU host under the message limit', () => {
    const samples = Array.from({ length: TELEMETRY_MAX_BATCH }, (_, i) => worst(i));
    const size = encode(AgentTelemetry, buildAgentTelemetry(agentId, samples, 2 ** 31)).byteLength;
    expect(size).toBeLessThan(MAX_MESSAGE_BYTES * 0.75);
  });

  it('refuses more samples than a batch holds, and an empty batch', () => {
    const samples = Array.from({ length: TELEMETRY_MAX_BATCH + 1 }, (_, i) => sample(i, []));
    expect(AgentTelemetry.safeParse(buildAgentTelemetry(agentId, samples, 0)).success).toBe(false);
    expect(AgentTelemetry.safeParse(buildAgentTelemetry(agentId, [], 0)).success).toBe(false);
  });

  it.each([
    ['utilisation above 100 %', { utilizationPct: 100.5 }, 'samples.0.gpus.0.1'],
    ['negative power', { powerW: -1 }, 'samples.0.gpus.0.4'],
    ['a temperature no GPU survives', { temperatureC: 400 }, 'samples.0.gpus.0.5'],
    ['negative memory', { memoryUsedMiB: -5 }, 'samples.0.gpus.0.3'],
    ['fractional MiB', { memoryUsedMiB: 1.5 }, 'samples.0.gpus.0.3'],
    ['a name that could carry data', { name: 'x'.repeat(129) }, 'gpus.0.name'],
    ['a uuid with spaces', { uuid: 'GPU-1 2' }, 'gpus.0.uuid'],
  ])('rejects %s', (_, overrides, path) => {
    const message = buildAgentTelemetry(agentId, [sample(0, [gpu(0, overrides)])], 0);
    const result = decode(AgentTelemetry, bytes(message));
    expect(result).toEqual({ ok: false, error: expect.stringContaining(`invalid: ${path}:`) });
    expect(() => encode(AgentTelemetry, message)).toThrow();
  });

  it('rejects unknown fields, extra tuple values and dangling references', () => {
    const message = buildAgentTelemetry(agentId, [sample(0, [gpu(0)])], 0);
    const withExtra = { ...message, samples: [{ ...message.samples[0], rows: ['secret,1,2'] }] };
    expect(decode(AgentTelemetry, bytes(withExtra)).ok).toBe(false);

    const longTuple = structuredClone(message);
    (longTuple.samples[0].gpus[0] as unknown[]).push('secret');
    expect(decode(AgentTelemetry, bytes(longTuple)).ok).toBe(false);

    const dangling = structuredClone(message);
    dangling.samples[0].gpus[0][0] = 1;
    dangling.samples[0].jobs[0][0] = 8;
    const result = decode(AgentTelemetry, bytes(dangling));
    expect(result).toEqual({ ok: false, error: 'invalid: samples.0.gpus.0.0: unknown gpu' });
  });

  it('rejects a sample that lists the same GPU twice (each reading would count its time again)', () => {
    const twice = buildAgentTelemetry(agentId, [sample(0, [gpu(0), gpu(1), gpu(0)])], 0);
    expect(decode(AgentTelemetry, bytes(twice))).toEqual({
      ok: false,
      error: 'invalid: samples.0.gpus.2.0: nvidia GPU 0 appears twice in the sample',
    });
    expect(() => encode(AgentTelemetry, twice)).toThrow();

    // Two table entries for one GPU (its power limit changed) are still the same GPU.
    const relimited = buildAgentTelemetry(agentId, [sample(0, [gpu(3), gpu(3, { powerLimitW: 450 })])], 0);
    expect(relimited.gpus).toHaveLength(2);
    expect(decode(AgentTelemetry, bytes(relimited))).toEqual({
      ok: false,
      error: 'invalid: samples.0.gpus.1.0: nvidia GPU 3 appears twice in the sample',
    });

    // The same index of another vendor is another GPU; the same GPU in the next sample is its next reading.
    const amd = gpu(0, { vendor: 'amd', uuid: '0x1234', name: 'AMD Instinct MI300X' });
    const fine = buildAgentTelemetry(agentId, [sample(0, [gpu(0), amd]), sample(5, [gpu(0), amd])], 0);
    expect(decode(AgentTelemetry, bytes(fine)).ok).toBe(true);
  });

  it('rejects a negative host rate and a CPU share above 100 %', () => {
    const negative = buildAgentTelemetry(agentId, [{ ...sample(0, []), net: { rxBps: -1, txBps: 0 } }], 0);
    expect(decode(AgentTelemetry, bytes(negative)).ok).toBe(false);
    const jobs = [{ jobId: jobIds[0], cpuPct: 101 }];
    const share = buildAgentTelemetry(agentId, [{ ...sample(0, []), jobs }], 0);
    expect(decode(AgentTelemetry, bytes(share)).ok).toBe(false);
  });

  it('carries the sampling interval (each sample stands for it), 1 to 60 seconds', () => {
    expect(buildAgentTelemetry(agentId, [sample(0)], 0).intervalSeconds).toBe(5);
    const every = (s: number) => buildAgentTelemetry(agentId, [sample(0)], 0, s);
    expect(decode(AgentTelemetry, bytes(every(1))).ok).toBe(true);
    expect(decode(AgentTelemetry, bytes(every(60))).ok).toBe(true);
    for (const bad of [0, 61, 2.5])
      expect(decode(AgentTelemetry, bytes(every(bad)))).toEqual({
        ok: false,
        error: expect.stringContaining('invalid: intervalSeconds:'),
      });
  });
});
