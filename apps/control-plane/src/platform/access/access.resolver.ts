import { Query, Resolver } from '@nestjs/graphql';
import { CurrentPrincipal } from '../auth/principal.decorator.js';
import type { Principal } from '../auth/principal.js';
import { PERMISSIONS } from './permissions.js';
import { allows } from './ability.js';
import { Requires } from './policy.decorator.js';

@Resolver()
export class AccessResolver {
  @Query(() => [String], {
    description:
      'The permissions the caller holds with this token, anywhere: exactly what the guard lets through. ' +
      'Project.myPermissions answers for one project.',
  })
  @Requires('authenticated')
  myPermissions(@CurrentPrincipal() p: Principal): string[] {
    return PERMISSIONS.filter((perm) => allows(p.ability, perm));
  }
}
