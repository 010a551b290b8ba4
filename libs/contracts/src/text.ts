/**
 * Text that every hop can carry faithfully. Postgres refuses NUL in `text` and `jsonb`, and an
 * unpaired UTF-16 surrogate is not Unicode at all (JSON encoders write it as a lone `\uD800`
 * escape, which `jsonb` refuses too). So free text that may be stored, whether a user typed it
 * or an agent sent it, must be free of both: schemas refuse it, producers clean it first.
 */
import { z } from 'zod';

// With the `u` flag a class of surrogates matches only the unpaired ones: a pair is one code point.
const UNSTORABLE = /[\0\uD800-\uDFFF]/u;
const UNSTORABLE_ALL = /[\0\uD800-\uDFFF]/gu;

export const UNSTORABLE_TEXT_MESSAGE = 'must not contain NUL characters or unpaired surrogates';

export function isStorableText(s: string): boolean {
  return !UNSTORABLE.test(s);
}

/** A bounded string that Postgres can store. */
export const storableText = (max: number) =>
  z.string().max(max).refine(isStorableText, UNSTORABLE_TEXT_MESSAGE);

/**
 * `s` made storable and at most `max` UTF-16 units long: NUL and unpaired surrogates become
 * U+FFFD, and a cut never splits a surrogate pair. Longer text ends with `…`.
 */
export function clipText(s: string, max: number): string {
  const clean = s.replace(UNSTORABLE_ALL, '\uFFFD');
  if (clean.length <= max) return clean;
  let end = max - 1; // room for the ellipsis
  const last = clean.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1; // a pair's first half: keep the pair whole or drop it
  return `${clean.slice(0, end)}…`;
}
