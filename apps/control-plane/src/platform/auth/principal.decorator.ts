import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { GqlExecutionContext } from '@nestjs/graphql';
import type { Principal } from './principal.js';

/** The caller, as the auth guard put it on the GraphQL context. Throws loudly if the guard did not run. */
export const CurrentPrincipal = createParamDecorator((_: unknown, context: ExecutionContext): Principal => {
  const principal = GqlExecutionContext.create(context).getContext<{ principal?: Principal }>().principal;
  if (!principal)
    throw new Error('CurrentPrincipal used without the auth guard: this resolver is not protected');
  return principal;
});
