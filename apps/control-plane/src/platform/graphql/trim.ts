import { Transform } from 'class-transformer';

/**
 * Trims a string input before it is validated, so a length rule sees what will be stored: a name
 * of spaces is empty, not 3 characters long.
 */
export const Trim = () =>
  Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value));
