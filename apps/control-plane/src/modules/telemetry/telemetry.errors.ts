import { DomainError } from '../../platform/errors/domain-error.js';

export class TelemetryRangeError extends DomainError {
  constructor(message: string) {
    super('BAD_USER_INPUT', message);
  }
}
