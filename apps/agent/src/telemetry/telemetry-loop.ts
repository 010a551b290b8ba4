/**
 * The agent's telemetry: one sample every interval into a bounded buffer, and a sender that empties
 * the buffer oldest first through the egress guard. While the control plane cannot be reached
 * (NATS down, stream full, no ack), samples wait in the buffer; when it is full the oldest are
 * dropped and counted, and the next message says how many. Once a send succeeds again the backlog
 * goes up in order (backfill), a full batch at a time.
 *
 * Each sample also tells the GPU allocator which GPUs the host has, and carries, for a GPU no job's
 * process runs on, the job the allocator assigned it to: a GPU held but idle is what idle detection
 * looks for.
 */
import type { AgentTelemetry, GpuTool, GpuVendorName, TelemetrySample } from '@hearth/contracts';
import { backoffDelay, sleep, type BackoffPolicy } from '../connection/backoff.js';
import { errorMessage, type Logger } from '../logger.js';
import type { AgentCounters } from './counters.js';
import type { GpuAllocator, GpuDevice } from './gpu-allocator.js';
import { SampleBuffer } from './sample-buffer.js';
import { takeTelemetryBatch } from './telemetry-batch.js';

export interface TelemetrySampler {
  sample(): Promise<TelemetrySample>;
}

export interface TelemetryLoopOptions {
  agentId: string;
  intervalSeconds: number;
  /** Samples kept while they cannot be sent. */
  bufferCapacity: number;
  collector: TelemetrySampler;
  send: (message: AgentTelemetry) => Promise<unknown>;
  allocator?: GpuAllocator;
  counters: AgentCounters;
  logger: Logger;
  /** Retry pacing after a failed send (capped low: a restarted NATS must not keep samples back long). */
  backoff?: BackoffPolicy;
}

const SEND_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 5000 };
const VENDOR_TOOL: Record<GpuVendorName, GpuTool> = { nvidia: 'nvidia-smi', amd: 'rocm-smi' };

export class TelemetryLoop {
  readonly buffer: SampleBuffer<TelemetrySample>;
  private wake: (() => void) | null = null;

  constructor(private readonly options: TelemetryLoopOptions) {
    this.buffer = new SampleBuffer(options.bufferCapacity);
  }

  /**
   * Takes one sample now: the agent calls this once before it takes jobs, so the allocator knows
   * the host's GPUs before the first job asks for some.
   */
  async sampleOnce(): Promise<void> {
    const { collector, allocator, counters, logger } = this.options;
    let sample: TelemetrySample;
    try {
      sample = await collector.sample();
    } catch (err) {
      counters.telemetrySampleFailures++;
      logger.warn({ err: errorMessage(err) }, 'telemetry sample failed');
      return;
    }
    if (allocator) {
      allocator.setDevices(devicesAfter(allocator, sample));
      for (const gpu of sample.gpus) gpu.jobId ??= allocator.ownerOf(gpu);
    }
    this.buffer.push(sample);
    counters.telemetrySamples++;
    counters.telemetryDropped = this.buffer.droppedTotal;
    this.wake?.();
  }

  /** Samples every interval and sends until the signal aborts. Resolves when both loops have stopped. */
  async run(signal: AbortSignal): Promise<void> {
    await Promise.all([this.sampleLoop(signal), this.sendLoop(signal)]);
  }

  /** On a fixed schedule (no drift): a slow sample skips ticks rather than bunching them. */
  private async sampleLoop(signal: AbortSignal): Promise<void> {
    const period = this.options.intervalSeconds * 1000;
    let next = performance.now() + period;
    while (await sleep(Math.max(0, next - performance.now()), signal)) {
      await this.sampleOnce();
      const now = performance.now();
      next += period;
      if (next <= now) next += Math.ceil((now - next) / period) * period;
    }
    this.wake?.();
  }

  private async sendLoop(signal: AbortSignal): Promise<void> {
    const { agentId, intervalSeconds, counters, logger } = this.options;
    let failures = 0;
    while (!signal.aborted) {
      const taken = takeTelemetryBatch(this.buffer, agentId, undefined, intervalSeconds);
      if (!taken) {
        await this.waitForSample(signal);
        continue;
      }
      try {
        await this.options.send(taken.message);
        counters.telemetryBatchesSent++;
        if (failures > 0) logger.info({ failures, backlog: this.buffer.size }, 'telemetry sending again');
        failures = 0;
      } catch (err) {
        this.buffer.putBack(taken.batch);
        counters.telemetrySendFailures++;
        counters.telemetryDropped = this.buffer.droppedTotal;
        const delay = backoffDelay(failures++, this.options.backoff ?? SEND_BACKOFF);
        // Every failure is counted; the first of a run, and then one in 20, is logged.
        if (failures === 1 || failures % 20 === 0)
          logger.warn(
            { err: errorMessage(err), failures, buffered: this.buffer.size, retryInMs: delay },
            'telemetry not acknowledged; buffering and retrying',
          );
        await sleep(delay, signal);
      }
    }
  }

  private waitForSample(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        this.wake = null;
        resolve();
      };
      this.wake = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/**
 * The host's GPUs after a sample: what it shows, except for a vendor whose tool failed this time,
 * whose GPUs stay as they were (a hung nvidia-smi does not mean the GPUs went away).
 */
function devicesAfter(allocator: GpuAllocator, sample: TelemetrySample): GpuDevice[] {
  const failed = new Set(sample.issues.failedTools);
  const known = (vendor: GpuVendorName) => failed.has(VENDOR_TOOL[vendor]);
  const kept = allocator.all().filter((d) => known(d.vendor));
  const seen = sample.gpus
    .filter((g) => !known(g.vendor))
    .map((g) => ({ vendor: g.vendor, index: g.index, uuid: g.uuid }));
  return [...seen, ...kept];
}
