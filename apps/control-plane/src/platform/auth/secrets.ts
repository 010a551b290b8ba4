import { createHash, randomBytes } from 'node:crypto';

/**
 * Bearer secrets (API tokens, join tokens) are 256 random bits behind a readable prefix. Only their
 * SHA-256 is stored: with that much entropy a slow hash adds nothing, and lookup stays one index probe.
 */
/** hrt_: API token; hjt_: agent join token; hit_: member invitation. */
export function newSecret(prefix: 'hrt' | 'hjt' | 'hit'): { secret: string; hash: Buffer } {
  const secret = `${prefix}_${randomBytes(32).toString('base64url')}`;
  return { secret, hash: hashSecret(secret) };
}

export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}
