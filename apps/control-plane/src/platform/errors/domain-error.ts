/**
 * Domain errors carry a stable code; one formatter (graphql/error-formatter.ts) maps codes to GraphQL
 * error codes and HTTP statuses. Anything that is not a DomainError is a bug: logged with an id, and
 * the caller sees only that id.
 */
import { clipText } from '@hearth/contracts';

export type ErrorCode =
  'BAD_USER_INPUT' | 'UNAUTHENTICATED' | 'FORBIDDEN' | 'NOT_FOUND' | 'CONFLICT' | 'UNAVAILABLE';

export const HTTP_STATUS: Record<ErrorCode, number> = {
  BAD_USER_INPUT: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  UNAVAILABLE: 503,
};

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Also what another tenant's ids get: an error must not reveal that a record exists. */
export class NotFoundError extends DomainError {
  constructor(what: string, id: string) {
    super('NOT_FOUND', `${what} ${clipText(id, 100)} not found`); // a 1 MB "id" is not echoed whole
  }
}

export class InvalidInputError extends DomainError {
  constructor(message: string) {
    super('BAD_USER_INPUT', message);
  }
}

export class UnauthenticatedError extends DomainError {
  constructor(message = 'missing, invalid, expired or revoked credentials') {
    super('UNAUTHENTICATED', message);
  }
}
