import { Catch, HttpException, Inject, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { GqlArgumentsHost, type GqlContextType } from '@nestjs/graphql';
import type { FastifyReply } from 'fastify';
import { GraphQLError, type GraphQLResolveInfo } from 'graphql';
import type { Logger } from 'pino';
import { LOGGER } from '../logging/logging.module.js';
import { DomainError, HTTP_STATUS } from './domain-error.js';
import { toPublicError } from './error-formatter.js';

/** REST routes answer `{ "error": { "code", "message" } }` with the code's HTTP status. */
@Catch()
export class HttpErrorFilter implements ExceptionFilter {
  constructor(@Inject(LOGGER) private readonly log: Logger) {}

  catch(err: unknown, host: ArgumentsHost) {
    if (host.getType<GqlContextType>() === 'graphql') return this.graphql(err, host);
    if (host.getType() !== 'http') throw err;
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

  /**
   * Queries and mutations: rethrown, for the GraphQL error formatter. A subscription's errors never
   * reach that formatter (Mercurius sends them over the socket as they are), so they get their
   * public form here: a code, and no internals.
   */
  private graphql(err: unknown, host: ArgumentsHost): GraphQLError {
    const info = GqlArgumentsHost.create(host).getInfo<GraphQLResolveInfo>();
    if (info.operation.operation !== 'subscription') throw err;
    const pub = toPublicError(err, this.log);
    return new GraphQLError(pub.message, { extensions: { code: pub.code } });
  }
}
