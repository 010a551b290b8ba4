import { describe, expect, it } from '@jest/globals';
import { canonicalIds, CanonicalIdsPipe } from './canonical-ids.pipe.js';

const UPPER = '3F2A5C1E-9B7D-4C2E-8A1F-0123456789AB';
const lower = UPPER.toLowerCase();

describe('canonicalIds', () => {
  it('lower-cases uuids under id keys, at any depth and in lists', () => {
    const input = Object.assign(Object.create(null) as object, {
      projectId: UPPER,
      agentSelector: { agentIds: [UPPER, lower] },
      nested: [{ id: UPPER }],
    });
    expect(canonicalIds(input, 'input')).toEqual({
      projectId: lower,
      agentSelector: { agentIds: [lower, lower] },
      nested: [{ id: lower }],
    });
    expect(canonicalIds(UPPER, 'jobId')).toBe(lower);
  });

  it('leaves other text, other keys, non-uuids and non-plain objects alone', () => {
    const when = new Date(0);
    expect(
      canonicalIds(
        { name: UPPER, description: UPPER, projectId: 'NOT-A-UUID', valid: UPPER, since: when },
        '',
      ),
    ).toEqual({ name: UPPER, description: UPPER, projectId: 'NOT-A-UUID', valid: UPPER, since: when });
    expect((canonicalIds({ since: when }, '') as { since: Date }).since).toBe(when);
    expect(canonicalIds(UPPER, 'name')).toBe(UPPER);
  });

  it('does not touch what our own parameter decorators give', () => {
    const principal = { userId: UPPER };
    expect(new CanonicalIdsPipe().transform(principal, { type: 'custom', data: undefined })).toBe(principal);
    expect(new CanonicalIdsPipe().transform(UPPER, { type: 'body', data: 'projectId' })).toBe(lower);
  });
});
