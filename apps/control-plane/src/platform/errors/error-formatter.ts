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
  code: ErrorCode | 'GRAPHQL_VALIDATION_FAILED' | 'RATE_LIMITED' | 'INTERNAL_SERVER_ERROR';
  message: string;
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
    const errors = flat.map((e) => {
      const original = e.originalError;
      // No original error: GraphQL itself refused the document or its variables.
      const pub: PublicError =
        !original || original instanceof GraphQLError
          ? { code: 'GRAPHQL_VALIDATION_FAILED', message: e.message }
          : (original as { statusCode?: unknown }).statusCode === 429 // the rate limiter, before any resolver
            ? { code: 'RATE_LIMITED', message: original.message }
            : toPublicError(original, log);
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
    if (!execution.data && codes.every((c) => c === 'GRAPHQL_VALIDATION_FAILED')) statusCode = 400;
    else if (codes.length && codes.every((c) => c === 'RATE_LIMITED')) statusCode = 429;
    else if (codes.length && codes.every((c) => c === 'UNAUTHENTICATED'))
      statusCode = HTTP_STATUS.UNAUTHENTICATED;
    return { statusCode, response: { data: execution.data ?? null, errors } };
  };
}
