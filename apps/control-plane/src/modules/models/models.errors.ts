import { DomainError, NotFoundError } from '../../platform/errors/domain-error.js';

export class ModelNotFoundError extends NotFoundError {
  constructor(id: string) {
    super('model', id);
  }
}

export class ModelVersionNotFoundError extends NotFoundError {
  constructor(id: string) {
    super('model version', id);
  }
}

export class ModelInAnotherProjectError extends DomainError {
  constructor(name: string) {
    super('BAD_USER_INPUT', `model ${name} belongs to another project; choose another name`);
  }
}

export class NoOnnxArtifactError extends DomainError {
  constructor(id: string) {
    super('BAD_USER_INPUT', `model version ${id} has no ONNX file to serve or predict with`);
  }
}
