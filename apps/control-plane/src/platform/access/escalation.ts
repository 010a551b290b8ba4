import { DomainError } from '../errors/domain-error.js';
import { holds, type Grant } from './grants.js';
import { isProjectPermission, type Permission } from './permissions.js';

export class EscalationError extends DomainError {
  constructor(message: string) {
    super('FORBIDDEN', message);
  }
}

/** The permissions a role actually confers at a scope: a project binding confers project permissions only. */
export function conferred(permissions: readonly Permission[], projectId: string | null): Permission[] {
  return projectId === null ? [...permissions] : permissions.filter(isProjectPermission);
}

/**
 * No privilege escalation: a caller may hand out (by binding a role, defining or widening a custom
 * role, or minting a token) only permissions they hold themselves at that scope, with the token they
 * are calling with.
 */
export function assertMayConfer(
  caller: readonly Grant[],
  permissions: readonly Permission[],
  projectId: string | null,
  what: string,
): void {
  const missing = conferred(permissions, projectId).filter((p) => !holds(caller, p, projectId));
  if (missing.length > 0)
    throw new EscalationError(
      `${what} would grant ${missing.join(', ')}, which you do not hold${projectId ? ' in that project' : ''}`,
    );
}
