/**
 * The one mapping from errors to what callers see. Domain errors keep their code and message;
 * input validation becomes BAD_USER_INPUT; anything else is logged with an id and only that id is
 * returned, so internals never leak.
 */
import { HttpException } from '@nestjs/common';
import { GraphQLError, type ExecutionResult } from 'graphql';
import { v7 as uuidv7 } from 'uuid';
import type { Logger } from 'pino';
import { DomainError, HTTP_STATUS, type ErrorCode } from './domain-error.js';

export interface PublicError {
  code: ErrorCode | 'BAD_REQUEST' | 'GRAPHQL_VALIDATION_FAILED' | 'RATE_LIMITED' | 'INTERNAL_SERVER_ERROR';
  message: string;
}

/**
 * A request that Fastify or Mercurius refused before GraphQL ran (a body that is not JSON, no
 * query, a body over the limit): the caller's mistake, with the status the framework chose.
 */
export function requestError(err: unknown): (PublicError & { status: number }) | null {
  const { statusCode, code, message } = (err ?? {}) as {
    statusCode?: unknown;
    code?: unknown;
    message?: unknown;
  };
  if (typeof statusCode !== 'number' || statusCode < 400 || statusCode > 499 || statusCode === 429)
    return null;
  if (typeof code !== 'string' || !/^(FST|MER)_ERR_/.test(code)) return null;
  return {
    code: 'BAD_REQUEST',
    message: typeof message === 'string' ? message : 'bad request',
    status: statusCode,
  };
}

export function toPublicError(err: unknown, log: Logger): PublicError {
  if (err instanceof DomainError) return { code: err.code, message: err.message };
  if (err instanceof HttpException && err.getStatus() === 400) {
    const body = err.getResponse() as { message?: string | string[] };
    const message = Array.isArray(body.message) ? body.message.join('; ') : (body.message ?? err.message);
    return { code: 'BAD_USER_INPUT', message };
  }
  const errorId = uuidv7();
  log.error({ err, errorId }, 'unexpected error');
  return { code: 'INTERNAL_SERVER_ERROR', message: `internal error (id ${errorId})` };
}

type AnyGraphQLError = GraphQLError & { originalError?: (Error & { errors?: GraphQLError[] }) | null };

export function graphqlErrorFormatter(log: Logger) {
  return (execution: ExecutionResult & Required<Pick<ExecutionResult, 'errors'>>) => {
    // Mercurius wraps parse/validation failures in one error that carries the GraphQL errors.
    const flat = (execution.errors as readonly AnyGraphQLError[]).flatMap((e) =>
      Array.isArray(e.originalError?.errors) ? e.originalError.errors : [e],
    ) as AnyGraphQLError[];
    let requestStatus = 0;
    const errors = flat.map((e) => {
      const original = e.originalError;
      const refused = requestError(original);
      if (refused) requestStatus = Math.max(requestStatus, refused.status);
      // No original error: GraphQL itself refused the document or its variables. An original
      // GraphQLError with a code is one already made public (a subscription's, by HttpErrorFilter).
      const pub: PublicError =
        !original || original instanceof GraphQLError
          ? {
              code:
                (original?.extensions?.code as PublicError['code'] | undefined) ??
                'GRAPHQL_VALIDATION_FAILED',
              message: e.message,
            }
          : (original as { statusCode?: unknown }).statusCode === 429 // the rate limiter, before any resolver
            ? { code: 'RATE_LIMITED', message: original.message }
            : (refused ?? toPublicError(original, log));
      return new GraphQLError(pub.message, {
        nodes: e.nodes,
        source: e.source,
        positions: e.positions,
        path: e.path,
        extensions: { code: pub.code },
      });
    });
    const codes = errors.map((e) => e.extensions.code as string);
    let statusCode = 200;
    if (codes.length && codes.every((c) => c === 'BAD_REQUEST')) statusCode = requestStatus;
    else if (!execution.data && codes.every((c) => c === 'GRAPHQL_VALIDATION_FAILED')) statusCode = 400;
    else if (codes.length && codes.every((c) => c === 'RATE_LIMITED')) statusCode = 429;
    else if (codes.length && codes.every((c) => c === 'UNAUTHENTICATED'))
      statusCode = HTTP_STATUS.UNAUTHENTICATED;
    return { statusCode, response: { data: execution.data ?? null, errors } };
  };
}
