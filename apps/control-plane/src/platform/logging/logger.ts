import { pino, type Logger } from 'pino';
import { requestContext } from './request-context.js';

/** Paths whose values never reach a log line. */
export const REDACT = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  'token',
  '*.token',
  'adminToken',
  'natsJwt',
  '*.natsJwt',
  'seed',
  '*.seed',
  'password',
  '*.password',
];

export function createLogger(level: string, name = 'control-plane'): Logger {
  // Synchronous writes: a line logged just before a crash or a SIGKILL is never lost.
  const destination = pino.destination({ dest: 1, sync: true });
  return pino(
    {
      name,
      level,
      redact: { paths: REDACT, censor: '[redacted]' },
      // Request id and tenant id on every line written while serving a request.
      mixin() {
        const ctx = requestContext();
        return ctx ? { requestId: ctx.requestId, tenantId: ctx.tenantId } : {};
      },
    },
    destination,
  );
}
