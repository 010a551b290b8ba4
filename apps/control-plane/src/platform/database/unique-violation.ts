/** Postgres's SQLSTATE for a unique constraint violation. */
const UNIQUE_VIOLATION = '23505';

/**
 * For `.catch()` on an INSERT: a unique violation becomes the domain error `conflict()` makes (a
 * name already taken), anything else is rethrown as is.
 */
export function onUniqueViolation(conflict: () => Error): (err: unknown) => never {
  return (err) => {
    throw (err as { code?: unknown } | null)?.code === UNIQUE_VIOLATION ? conflict() : err;
  };
}
