import { pino, type Logger } from 'pino';
import type { LogLevel } from './config/config.js';

export type { Logger };

/** Paths that may hold secrets; pino replaces them before a line is written. */
const REDACT = ['natsJwt', 'seed', 'token', '*.natsJwt', '*.seed', '*.token'];

/** JSON lines on stderr (stdout stays for what the CLI prints to the user). */
export function createLogger(level: LogLevel, bindings: Record<string, string> = {}): Logger {
  return pino(
    {
      level,
      base: bindings,
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: 2, sync: true }),
  );
}

/** The message of an unknown thrown value, for a log line (never the whole object). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
