/**
 * The next telemetry message from the buffer: its oldest samples, as many as the contract allows
 * and as fit in MAX_MESSAGE_BYTES (a host with many GPUs or jobs fits fewer). The samples left out
 * go back to the front of the buffer. If the send fails, put the returned batch back.
 */
import {
  buildAgentTelemetry,
  MAX_MESSAGE_BYTES,
  TELEMETRY_INTERVAL,
  TELEMETRY_MAX_BATCH,
  type AgentTelemetry,
  type TelemetrySample,
} from '@hearth/contracts';
import type { Batch, SampleBuffer } from './sample-buffer.js';

export interface TelemetryBatch {
  message: AgentTelemetry;
  /** What to put back in the buffer when the message could not be sent. */
  batch: Batch<TelemetrySample>;
}

/** Null when the buffer holds no sample (its drop count, if any, waits for the next one). */
export function takeTelemetryBatch(
  buffer: SampleBuffer<TelemetrySample>,
  agentId: string,
  maxBytes = MAX_MESSAGE_BYTES,
  intervalSeconds: number = TELEMETRY_INTERVAL.default,
): TelemetryBatch | null {
  const taken = buffer.take(TELEMETRY_MAX_BATCH);
  if (taken.items.length === 0) {
    buffer.putBack(taken);
    return null;
  }
  let n = taken.items.length;
  for (;;) {
    const message = buildAgentTelemetry(agentId, taken.items.slice(0, n), taken.dropped, intervalSeconds);
    const bytes = Buffer.byteLength(JSON.stringify(message));
    if (bytes <= maxBytes || n === 1) {
      buffer.putBack({ items: taken.items.slice(n), dropped: 0 });
      return { message, batch: { items: taken.items.slice(0, n), dropped: taken.dropped } };
    }
    // Samples are about the same size: aim just under the limit, and always make progress.
    n = Math.max(1, Math.min(n - 1, Math.floor((n * maxBytes) / bytes)));
  }
}
