/**
 * What a time-series query may ask for: a range no longer than its resolution allows, and no more
 * points than a response may carry. Without a resolution the finest that fits is chosen.
 */
import { floorTo } from './clock.js';
import { TelemetryResolution } from './telemetry.model.js';
import { TelemetryRangeError } from './telemetry.errors.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** The longest range per resolution. */
export const MAX_RANGE_MS: Record<TelemetryResolution, number> = {
  RAW: 6 * HOUR_MS,
  MINUTE: 7 * DAY_MS,
  HOUR: 400 * DAY_MS,
};
/** Points in one response, all series together. */
export const MAX_POINTS = 10_000;

export const BUCKET_MS: Record<Exclude<TelemetryResolution, 'RAW'>, number> = {
  MINUTE: 60_000,
  HOUR: HOUR_MS,
};

export interface ResolvedRange {
  from: Date;
  to: Date;
  resolution: TelemetryResolution;
}

export function resolveRange(input: {
  from: Date;
  to: Date;
  resolution?: TelemetryResolution | null;
}): ResolvedRange {
  const { from, to } = input;
  if (!(from instanceof Date) || !(to instanceof Date) || isNaN(from.getTime()) || isNaN(to.getTime()))
    throw new TelemetryRangeError('from and to must be times');
  if (from >= to) throw new TelemetryRangeError('from must be before to');
  const span = to.getTime() - from.getTime();
  const resolution =
    input.resolution ??
    (span <= HOUR_MS
      ? TelemetryResolution.RAW
      : span <= 2 * DAY_MS
        ? TelemetryResolution.MINUTE
        : TelemetryResolution.HOUR);
  if (span > MAX_RANGE_MS[resolution])
    throw new TelemetryRangeError(
      `a ${resolution} series covers at most ${MAX_RANGE_MS[resolution] / HOUR_MS} hours; narrow the range or use a coarser resolution`,
    );
  if (resolution === TelemetryResolution.RAW) return { from, to, resolution };
  // Whole buckets: from rounded down, to rounded up.
  const unit = resolution === TelemetryResolution.MINUTE ? 'minute' : 'hour';
  const bucket = BUCKET_MS[resolution];
  const start = floorTo(from, unit);
  const end = new Date(Math.ceil(to.getTime() / bucket) * bucket);
  if ((end.getTime() - start.getTime()) / bucket > MAX_POINTS)
    throw new TelemetryRangeError(
      `more than ${MAX_POINTS} points: narrow the range or use a coarser resolution`,
    );
  return { from: start, to: end, resolution };
}

/** Refuses a response that would carry more than MAX_POINTS points (the queries read one more). */
export function checkPoints(count: number): void {
  if (count > MAX_POINTS)
    throw new TelemetryRangeError(
      `more than ${MAX_POINTS} points: narrow the range or use a coarser resolution`,
    );
}
