/**
 * Ids in their one written form. Postgres's uuid type reads `3F2A…` and `3f2a…` as the same id and
 * always writes it in lower case, so a client may send either; but ids are also compared as text
 * here (a role binding's project against the one a request names), where a capital would fail the
 * check. This pipe lower-cases, before validation, every uuid among the arguments that an id goes
 * in by name: `id`, and a key ending in `Id` or `Ids`, at any depth. Other text is left alone.
 */
import { Injectable, type ArgumentMetadata, type PipeTransform } from '@nestjs/common';
import { validate as isUuid } from 'uuid';

const ID_KEY = /^id$|Ids?$/;

@Injectable()
export class CanonicalIdsPipe implements PipeTransform {
  transform(value: unknown, metadata: ArgumentMetadata): unknown {
    // 'custom': what our own parameter decorators give (the principal), not the client's input.
    if (metadata.type === 'custom') return value;
    return canonicalIds(value, metadata.data ?? '');
  }
}

export function canonicalIds(value: unknown, key: string): unknown {
  if (typeof value === 'string') return ID_KEY.test(key) && isUuid(value) ? value.toLowerCase() : value;
  if (Array.isArray(value)) return value.map((item) => canonicalIds(item, key));
  if (value !== null && typeof value === 'object') {
    // GraphQL input objects arrive plain (graphql-js makes them without a prototype); a Date or a
    // class instance is left as it is.
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null)
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, canonicalIds(v, k)]));
  }
  return value;
}
