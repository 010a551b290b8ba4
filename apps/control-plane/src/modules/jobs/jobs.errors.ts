import { DomainError, NotFoundError } from '../../platform/errors/domain-error.js';

export class JobNotFoundError extends NotFoundError {
  constructor(id: string) {
    super('job', id);
  }
}

export class InvalidCursorError extends DomainError {
  constructor() {
    super('BAD_USER_INPUT', 'after is not a cursor returned by jobs');
  }
}

export class InvalidPageSizeError extends DomainError {
  constructor() {
    super('BAD_USER_INPUT', 'first must be between 1 and 200');
  }
}
