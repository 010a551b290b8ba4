import { Global, Module, type LoggerService } from '@nestjs/common';
import type { Logger } from 'pino';
import { CONFIG, type Config } from '../../config/config.js';
import { createLogger } from './logger.js';

export const LOGGER = Symbol('LOGGER');

/** Routes Nest's own log lines into the same structured pino stream. */
export class NestPinoLogger implements LoggerService {
  constructor(private readonly pino: Logger) {}
  log(message: unknown, context?: string) {
    this.pino.info({ context }, String(message));
  }
  error(message: unknown, trace?: string, context?: string) {
    this.pino.error({ context, trace }, String(message));
  }
  warn(message: unknown, context?: string) {
    this.pino.warn({ context }, String(message));
  }
  debug(message: unknown, context?: string) {
    this.pino.debug({ context }, String(message));
  }
  verbose(message: unknown, context?: string) {
    this.pino.trace({ context }, String(message));
  }
}

@Global()
@Module({
  providers: [{ provide: LOGGER, inject: [CONFIG], useFactory: (c: Config) => createLogger(c.logLevel) }],
  exports: [LOGGER],
})
export class LoggingModule {}
