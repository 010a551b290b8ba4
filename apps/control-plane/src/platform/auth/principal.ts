import type { HearthAbility } from '../access/ability.js';
import type { Permission } from '../access/permissions.js';

/** Who is calling, and what they may do. The tenant comes from here and nowhere else. */
export interface Principal {
  kind: 'user';
  tenantId: string;
  userId: string;
  tokenId: string;
  roles: readonly string[];
  permissions: ReadonlySet<Permission>;
  ability: HearthAbility;
}
