/**
 * The time the telemetry module's periodic work runs at. Injected so tests can move it (idle
 * detection over a 30-minute window is tested without waiting 30 minutes).
 */
export type Clock = () => Date;

export const CLOCK = Symbol('TELEMETRY_CLOCK');

export const systemClock: Clock = () => new Date();

/** The start of the minute, hour or day a time falls in (UTC). */
export function floorTo(date: Date, unit: 'minute' | 'hour' | 'day'): Date {
  const ms = { minute: 60_000, hour: 3_600_000, day: 86_400_000 }[unit];
  return new Date(Math.floor(date.getTime() / ms) * ms);
}
