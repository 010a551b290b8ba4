import { AbilityBuilder, createMongoAbility, type MongoAbility } from '@casl/ability';
import type { Permission } from './permissions.js';

type Action = string;
type Subject = string;
export type HearthAbility = MongoAbility<[Action, Subject]>;

/** 'jobs:submit' → can('submit', 'jobs'). Built once per request from the caller's permissions. */
export function buildAbility(permissions: Iterable<Permission>): HearthAbility {
  const { can, build } = new AbilityBuilder<HearthAbility>(createMongoAbility);
  for (const p of permissions) {
    const [subject, action] = p.split(':');
    can(action, subject);
  }
  return build();
}

export function allows(ability: HearthAbility, permission: Permission): boolean {
  const [subject, action] = permission.split(':');
  return ability.can(action, subject);
}
