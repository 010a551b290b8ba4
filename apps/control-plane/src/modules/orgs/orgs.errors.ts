import { DomainError, NotFoundError } from '../../platform/errors/domain-error.js';

export class PrincipalNotFoundError extends NotFoundError {
  constructor(id: string) {
    super('member or service account', id);
  }
}

export class RoleNotFoundError extends NotFoundError {
  constructor(id: string) {
    super('role', id);
  }
}

export class RoleBindingNotFoundError extends NotFoundError {
  constructor(id: string) {
    super('role binding', id);
  }
}

export class ApiTokenNotFoundError extends NotFoundError {
  constructor(id: string) {
    super('API token', id);
  }
}

export class UnknownRoleError extends DomainError {
  constructor(name: string, known: readonly string[]) {
    super('BAD_USER_INPUT', `unknown role ${name}; one of: ${known.join(', ')}`);
  }
}

export class UnknownPermissionError extends DomainError {
  constructor(names: readonly string[]) {
    super('BAD_USER_INPUT', `unknown permission ${names.join(', ')}; see the permission catalog`);
  }
}

/** A change the access rules forbid whatever the caller's permissions: self-change, last owner. */
export class AccessRuleError extends DomainError {
  constructor(message: string) {
    super('FORBIDDEN', message);
  }
}

export class ConflictError extends DomainError {
  constructor(message: string) {
    super('CONFLICT', message);
  }
}

export class InvitationInvalidError extends DomainError {
  constructor() {
    super('UNAUTHENTICATED', 'invitation token is unknown, used or expired');
  }
}
