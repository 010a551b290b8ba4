import { AbilityBuilder, createMongoAbility, subject, type MongoAbility } from '@casl/ability';
import type { Grant } from './grants.js';
import type { Permission } from './permissions.js';

type Action = string;
type Subject = string | { __caslSubjectType__: string; projectId: string | null };
export type HearthAbility = MongoAbility<[Action, Subject]>;

/**
 * 'jobs:submit' → can('submit', 'jobs'); a grant in a project adds the condition { projectId }.
 * Built once per request from the caller's grants.
 */
export function buildAbility(grants: Iterable<Grant>): HearthAbility {
  const { can, build } = new AbilityBuilder<HearthAbility>(createMongoAbility);
  const inProjects = new Map<Permission, string[]>();
  for (const g of grants) {
    if (g.projectId === null) {
      const [type, action] = g.permission.split(':');
      can(action, type);
    } else {
      inProjects.set(g.permission, [...(inProjects.get(g.permission) ?? []), g.projectId]);
    }
  }
  for (const [permission, projectIds] of inProjects) {
    const [type, action] = permission.split(':');
    can(action, type, { projectId: { $in: projectIds } });
  }
  return build();
}

/** Whether the permission is held anywhere: what the guard asks before an operation runs. */
export function allows(ability: HearthAbility, permission: Permission): boolean {
  const [type, action] = permission.split(':');
  return ability.can(action, type);
}

/** Whether the permission holds for an object in the given project (null: outside any project). */
export function allowsOn(ability: HearthAbility, permission: Permission, projectId: string | null): boolean {
  const [type, action] = permission.split(':');
  return ability.can(action, subject(type, { projectId }));
}
