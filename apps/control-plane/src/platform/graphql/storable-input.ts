/**
 * One check for every string a request brings, before anything runs: a NUL character or an
 * unpaired surrogate, in a literal of the document or in a variable, is refused as bad input.
 * Postgres cannot store either (see @hearth/contracts text.ts), so without this check each text
 * argument would need its own guard, and a missed one would surface as an internal error.
 */
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from '@hearth/contracts';
import { BREAK, visit, type DocumentNode } from 'graphql';
import { InvalidInputError } from '../errors/domain-error.js';

export function assertStorableInput(document: DocumentNode, variables: Record<string, unknown> | undefined) {
  let literal: { line: number; column: number } | null | undefined;
  visit(document, {
    StringValue(node) {
      if (isStorableText(node.value)) return undefined;
      const start = node.loc?.startToken;
      literal = start ? { line: start.line, column: start.column } : null;
      return BREAK;
    },
  });
  if (literal !== undefined) {
    const where = literal ? ` (line ${literal.line}, column ${literal.column})` : '';
    throw new InvalidInputError(`a string argument${where} ${UNSTORABLE_TEXT_MESSAGE}`);
  }
  for (const [name, value] of Object.entries(variables ?? {}))
    if (!storable(value)) throw new InvalidInputError(`variable $${name} ${UNSTORABLE_TEXT_MESSAGE}`);
}

function storable(value: unknown): boolean {
  if (typeof value === 'string') return isStorableText(value);
  if (Array.isArray(value)) return value.every(storable);
  if (value !== null && typeof value === 'object')
    return Object.entries(value).every(([k, v]) => isStorableText(k) && storable(v));
  return true;
}
