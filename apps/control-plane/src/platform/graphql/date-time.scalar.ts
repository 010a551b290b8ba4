/**
 * `DateTime`, the schema's one time type: an RFC 3339 date-time string in and out (output always
 * UTC, with milliseconds). It replaces @nestjs/graphql's GraphQLISODateTime, which passes anything
 * to `new Date()` (so `5`, `true` or `"yesterday"` arrive as a 1970 date or an Invalid Date) and
 * turns a literal of the wrong kind into null. graphql-scalars' DateTime, the usual library, also
 * takes Unix timestamps as numbers; an API whose timestamps are strings should refuse those.
 */
import { GraphQLError, GraphQLScalarType, Kind } from 'graphql';

// RFC 3339 section 5.6 (a "T" or space may separate the parts; a lower-case "t" or "z" is allowed).
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

function parse(value: unknown): Date {
  if (typeof value === 'string' && RFC3339.test(value)) {
    const date = new Date(value);
    // Date.parse rolls impossible fields over or refuses them: 2026-02-30 must not become March 2.
    if (!Number.isNaN(date.getTime()) && sameCalendarDate(value, date)) return date;
  }
  throw new GraphQLError(
    `DateTime must be an RFC 3339 date-time such as 2026-11-21T09:30:00Z, got ${describe(value)}`,
  );
}

/** Whether the calendar date written in `value` is the one `date` holds, in the offset written. */
function sameCalendarDate(value: string, date: Date): boolean {
  const offset = /([+-])(\d{2}):(\d{2})$/.exec(value);
  const minutes = offset ? (offset[1] === '-' ? -1 : 1) * (Number(offset[2]) * 60 + Number(offset[3])) : 0;
  const local = new Date(date.getTime() + minutes * 60_000).toISOString();
  return local.slice(0, 10) === value.slice(0, 10) && local.slice(11, 13) === value.slice(11, 13);
}

function describe(value: unknown): string {
  if (typeof value !== 'string') return `a ${value === null ? 'null' : typeof value}`;
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
}

export const DateTimeScalar = new GraphQLScalarType<Date, string>({
  name: 'DateTime',
  description: 'An RFC 3339 date-time, such as 2026-11-21T09:30:00Z. Returned in UTC.',
  serialize(value) {
    const date = value instanceof Date ? value : typeof value === 'string' ? new Date(value) : null;
    if (date && !Number.isNaN(date.getTime())) return date.toISOString();
    throw new GraphQLError(`DateTime cannot represent ${describe(value)}`);
  },
  parseValue: parse,
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING)
      throw new GraphQLError(`DateTime must be an RFC 3339 date-time string, got a ${ast.kind} literal`);
    return parse(ast.value);
  },
});
