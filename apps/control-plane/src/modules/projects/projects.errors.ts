import { DomainError, NotFoundError } from '../../platform/errors/domain-error.js';

export class ProjectNotFoundError extends NotFoundError {
  constructor(id: string) {
    super('project', id);
  }
}

export class ProjectNameTakenError extends DomainError {
  constructor(name: string) {
    super('CONFLICT', `a project named ${name} already exists`);
  }
}
