import { describe, expect, it } from '@jest/globals';
import { UpEvent } from './messages.js';
import { clipText, isStorableText, UNSTORABLE_TEXT_MESSAGE } from './text.js';

describe('storable text', () => {
  it('tells NUL characters and unpaired surrogates from text Postgres stores', () => {
    expect(isStorableText('plain, ünïcode and 📈')).toBe(true);
    expect(isStorableText('a\u0000b')).toBe(false);
    expect(isStorableText('a\ud800b')).toBe(false); // a high surrogate alone
    expect(isStorableText('a\udc00b')).toBe(false); // a low surrogate alone
    expect(isStorableText('📈'.slice(0, 1))).toBe(false);
  });

  it('clips to a bound, replacing what cannot be stored and never splitting a pair', () => {
    expect(clipText('a\u0000b\ud800', 10)).toBe('a\uFFFDb\uFFFD');
    expect(clipText('abcdef', 4)).toBe('abc…');
    // '📈' is two UTF-16 units: cut between them, the pair goes whole.
    const clipped = clipText('ab📈cd', 4);
    expect(clipped).toBe('ab…');
    expect(isStorableText(clipped)).toBe(true);
    expect(clipText('ab📈cd', 5)).toBe('ab📈…');
  });

  it("is required of the free text in agents' messages", () => {
    const log = UpEvent.safeParse({
      type: 'job.log',
      v: 1,
      jobId: '01900000-0000-7000-8000-000000000001',
      attemptId: '01900000-0000-7000-8000-000000000002',
      fencingToken: 1,
      seq: 0,
      lines: [{ stream: 'stdout', text: 'bin\u0000ary' }],
      dropped: 0,
    });
    expect(log.success).toBe(false);
    expect(log.error?.issues.map((i) => i.message)).toContain(UNSTORABLE_TEXT_MESSAGE);
    const finished = UpEvent.safeParse({
      type: 'job.finished',
      v: 1,
      jobId: '01900000-0000-7000-8000-000000000001',
      attemptId: '01900000-0000-7000-8000-000000000002',
      fencingToken: 1,
      outcome: 'FAILED',
      exitCode: null,
      signal: null,
      reason: 'cannot open \ud800.csv',
      finishedAt: new Date().toISOString(),
    });
    expect(finished.error?.issues).toEqual([
      expect.objectContaining({ path: ['reason'], message: UNSTORABLE_TEXT_MESSAGE }),
    ]);
  });
});
