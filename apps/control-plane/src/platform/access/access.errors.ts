import { DomainError } from '../errors/domain-error.js';

export class PermissionDeniedError extends DomainError {
  constructor(permission: string) {
    super('FORBIDDEN', `permission denied: this operation requires ${permission}`);
  }
}
