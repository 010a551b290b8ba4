import { Catch, HttpException, Inject, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { LOGGER } from '../logging/logging.module.js';
import { DomainError, HTTP_STATUS } from './domain-error.js';
import { toPublicError } from './error-formatter.js';

/** REST routes answer `{ "error": { "code", "message" } }` with the code's HTTP status. */
@Catch()
export class HttpErrorFilter implements ExceptionFilter {
  constructor(@Inject(LOGGER) private readonly log: Logger) {}

  catch(err: unknown, host: ArgumentsHost) {
    if (host.getType() !== 'http') throw err; // GraphQL errors go through the GraphQL formatter
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    if (err instanceof HttpException && err.getStatus() !== 400) {
      const status = err.getStatus();
      const code = status === 404 ? 'NOT_FOUND' : status === 429 ? 'RATE_LIMITED' : `HTTP_${status}`;
      return reply.status(status).send({ error: { code, message: err.message } });
    }
    const pub = toPublicError(err, this.log);
    const status =
      err instanceof DomainError ? HTTP_STATUS[err.code] : pub.code === 'BAD_USER_INPUT' ? 400 : 500;
    return reply.status(status).send({ error: pub });
  }
}
