import { DomainError, NotFoundError } from '../../platform/errors/domain-error.js';

export class AgentNotFoundError extends NotFoundError {
  constructor(id: string) {
    super('agent', id);
  }
}

export class JoinTokenInvalidError extends DomainError {
  constructor() {
    super('UNAUTHENTICATED', 'join token is invalid');
  }
}

export class JoinTokenExpiredError extends DomainError {
  constructor() {
    super('UNAUTHENTICATED', 'join token has expired; create a new one with createJoinToken');
  }
}

export class JoinTokenUsedError extends DomainError {
  constructor() {
    super('CONFLICT', 'join token was already used; each token enrolls one agent');
  }
}

export class AgentKeyInUseError extends DomainError {
  constructor() {
    super('CONFLICT', 'this agent key is already enrolled; join with a fresh data dir');
  }
}

export class JoinTokenTtlError extends DomainError {
  constructor(max: number) {
    super('BAD_USER_INPUT', `ttlSeconds must be between 60 and ${max}`);
  }
}
