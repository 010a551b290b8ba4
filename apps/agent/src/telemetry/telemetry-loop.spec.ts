import { describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import {
  AgentTelemetry,
  encode,
  expandAgentTelemetry,
  type TelemetryGpuSample,
  type TelemetrySample,
} from '@hearth/contracts';
import { AgentCounters } from './counters.js';
import { GpuAllocator } from './gpu-allocator.js';
import { TelemetryLoop } from './telemetry-loop.js';

const agentId = '0190f3a4-5b6c-7d8e-9f00-112233445566';
const JOB = '0190f3a4-5b6c-7d8e-9f00-1122334455aa';
const logger = pino({ level: 'silent' });

function gpu(index: number, utilizationPct: number, jobId: string | null = null): TelemetryGpuSample {
  return {
    vendor: 'nvidia',
    index,
    uuid: `GPU-0000000${index}-aaaa`,
    name: 'NVIDIA H100 80GB HBM3',
    memoryTotalMiB: 81559,
    powerLimitW: 700,
    mig: false,
    utilizationPct,
    memoryUtilizationPct: 0,
    memoryUsedMiB: 1,
    powerW: 70,
    temperatureC: 30,
    smClockMHz: 345,
    jobId,
    foreignProcesses: 0,
  };
}

/** A collector whose samples are numbered (second n of the day), with two GPUs. */
function collector(failedTools: TelemetrySample['issues']['failedTools'] = []) {
  let n = 0;
  return {
    taken: () => n,
    sample: () =>
      Promise.resolve<TelemetrySample>({
        at: new Date(Date.UTC(2026, 10, 21, 10, 0, n++)).toISOString(),
        cpuPct: 1,
        memory: null,
        disk: null,
        net: null,
        gpus: failedTools.length ? [] : [gpu(0, 0), gpu(1, 90)],
        jobs: [],
        issues: { skippedLines: 0, rejectedValues: 0, failedTools },
      }),
  };
}

/** A control plane that can be made unreachable; it keeps what it acknowledged. */
function controlPlane() {
  const received: AgentTelemetry[] = [];
  let down = false;
  return {
    received,
    seconds: () =>
      received.flatMap((m) => expandAgentTelemetry(m).map((s) => new Date(s.at).getUTCSeconds())),
    dropped: () => received.reduce((a, m) => a + m.dropped, 0),
    set down(value: boolean) {
      down = value;
    },
    send: (message: AgentTelemetry) => {
      encode(AgentTelemetry, message); // what the egress guard does: refuse anything invalid
      if (down) return Promise.reject(new Error('no responders'));
      received.push(message);
      return Promise.resolve();
    },
  };
}

async function until(check: () => boolean) {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(check()).toBe(true);
}

function loop(options: { capacity: number; cp: ReturnType<typeof controlPlane>; allocator?: GpuAllocator }) {
  const counters = new AgentCounters();
  const c = collector();
  const telemetry = new TelemetryLoop({
    agentId,
    intervalSeconds: 1,
    bufferCapacity: options.capacity,
    collector: c,
    send: options.cp.send,
    allocator: options.allocator,
    counters,
    logger,
    backoff: { initialMs: 1, maxMs: 5 },
  });
  return { telemetry, counters, collector: c };
}

describe('TelemetryLoop', () => {
  it('sends each sample, in order, with the sampling interval', async () => {
    const cp = controlPlane();
    const { telemetry } = loop({ capacity: 100, cp });
    const stop = new AbortController();
    const running = telemetry.run(stop.signal);
    for (let i = 0; i < 3; i++) await telemetry.sampleOnce();
    await until(() => cp.seconds().length === 3);
    stop.abort();
    await running;
    expect(cp.seconds()).toEqual([0, 1, 2]);
    expect(cp.received.every((m) => m.intervalSeconds === 1 && m.agentId === agentId)).toBe(true);
  });

  it('buffers while the control plane is unreachable and backfills in order, losing nothing below the bound', async () => {
    const cp = controlPlane();
    const { telemetry, counters } = loop({ capacity: 50, cp });
    const stop = new AbortController();
    const running = telemetry.run(stop.signal);
    await telemetry.sampleOnce();
    await until(() => cp.seconds().length === 1);
    cp.down = true;
    for (let i = 0; i < 30; i++) await telemetry.sampleOnce();
    await until(() => counters.telemetrySendFailures > 2);
    expect(cp.seconds()).toEqual([0]);
    cp.down = false;
    await until(() => cp.seconds().length === 31);
    stop.abort();
    await running;
    expect(cp.seconds()).toEqual(Array.from({ length: 31 }, (_, i) => i));
    expect(cp.dropped()).toBe(0);
    expect(counters.telemetryDropped).toBe(0);
  });

  it('drops the oldest beyond the bound, counts them, and tells the control plane how many', async () => {
    const cp = controlPlane();
    const { telemetry, counters } = loop({ capacity: 10, cp });
    cp.down = true;
    for (let i = 0; i < 25; i++) await telemetry.sampleOnce();
    expect(counters.telemetryDropped).toBe(15);
    cp.down = false;
    const stop = new AbortController();
    const running = telemetry.run(stop.signal);
    await until(() => cp.seconds().length === 10);
    stop.abort();
    await running;
    expect(cp.seconds()).toEqual(Array.from({ length: 10 }, (_, i) => 15 + i));
    expect(cp.dropped()).toBe(15);
  });

  it('tells the allocator the host’s GPUs, and attributes a held GPU no process uses to its job', async () => {
    const cp = controlPlane();
    const allocator = new GpuAllocator();
    const { telemetry } = loop({ capacity: 10, cp, allocator });
    await telemetry.sampleOnce();
    expect(allocator.all().map((d) => d.index)).toEqual([0, 1]);
    expect(allocator.assign(JOB, 1)).toEqual({ ok: true, gpus: [allocator.all()[0]] });
    await telemetry.sampleOnce();
    const [, second] = telemetry.buffer.take(10).items;
    expect(second.gpus.map((g) => g.jobId)).toEqual([JOB, null]);
  });

  it('keeps the GPUs it knows when the vendor tool fails for a sample', async () => {
    const allocator = new GpuAllocator([
      { vendor: 'nvidia', index: 0, uuid: 'GPU-a' },
      { vendor: 'nvidia', index: 1, uuid: 'GPU-b' },
    ]);
    const telemetry = new TelemetryLoop({
      agentId,
      intervalSeconds: 1,
      bufferCapacity: 10,
      collector: collector(['nvidia-smi']),
      send: () => Promise.resolve(),
      allocator,
      counters: new AgentCounters(),
      logger,
    });
    await telemetry.sampleOnce();
    expect(allocator.all()).toHaveLength(2);
  });
});
