import { SetMetadata } from '@nestjs/common';
import type { Permission } from './permissions.js';

export const POLICY = 'hearth:policy';
/** What an operation requires: a catalog permission, or only an authenticated caller. */
export type Policy = Permission | 'authenticated';

/** Declares an operation's policy. An operation without one is refused: the guard fails loudly. */
export const Requires = (policy: Policy) => SetMetadata(POLICY, policy);
