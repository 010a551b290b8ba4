import type { HearthAbility } from '../access/ability.js';
import type { Grant } from '../access/grants.js';

/** Who is calling, and what they may do. The tenant comes from here and nowhere else. */
export interface Principal {
  kind: 'user' | 'service_account';
  tenantId: string;
  /** The principal's id: a member or a service account (both live in `users`). */
  userId: string;
  tokenId: string;
  /** Names of the roles bound to the principal (for audit records). */
  roles: readonly string[];
  /** What the caller may do with this token: bindings narrowed by the token's scopes and project. */
  grants: readonly Grant[];
  ability: HearthAbility;
  /** The token's own project, when it is confined to one. */
  tokenProjectId: string | null;
}
