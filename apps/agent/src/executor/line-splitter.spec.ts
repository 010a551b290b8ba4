import { describe, expect, it } from '@jest/globals';
import { LineSplitter } from './line-splitter.js';

/** The lines a splitter emits for `input`, fed in chunks of `chunkBytes`. */
function split(input: string | Buffer, chunkBytes = Infinity, maxPending?: number): string[] {
  const lines: string[] = [];
  const splitter = new LineSplitter((l) => lines.push(l), maxPending);
  const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input);
  for (let i = 0; i < bytes.length; i += Math.min(chunkBytes, bytes.length))
    splitter.push(bytes.subarray(i, i + chunkBytes));
  splitter.end();
  return lines;
}

describe('LineSplitter', () => {
  it('splits across chunks, keeps multi-byte characters whole and strips CR', () => {
    expect(split('héllo\r\nwörld\nlast', 1)).toEqual(['héllo', 'wörld', 'last']);
  });

  it('cuts a line that never ends instead of buffering it forever', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((l) => lines.push(l), 100);
    splitter.push(Buffer.from('x'.repeat(250)));
    expect(lines).toEqual(['x'.repeat(100), 'x'.repeat(100)]);
    splitter.end();
    expect(lines[2]).toBe('x'.repeat(50));
  });

  it('never cuts a long line between the two halves of a surrogate pair', () => {
    const lines = split(`${'a'.repeat(99)}😀b`, Infinity, 100);
    expect(lines).toEqual(['a'.repeat(99), '😀b']);
  });

  it('keeps what a terminal shows of carriage-return progress: the latest state', () => {
    expect(split('10%\r20%\r30%\nnext\n')).toEqual(['30%', 'next']);
    expect(split('abc\r\n')).toEqual(['abc']);
    expect(split('abc\r\nxyz\r')).toEqual(['abc', 'xyz']);
    expect(split('abc\r\r\ndef\n')).toEqual(['abc', 'def']);
    expect(split('\rstarting\r\n')).toEqual(['starting']);
  });

  it('handles a carriage return split from its line feed or its text by a chunk boundary', () => {
    const input = '10%\r20%\r\n30%\r40%\rdone\r\nend\r';
    const whole = split(input);
    expect(whole).toEqual(['20%', 'done', 'end']);
    for (const size of [1, 2, 3, 4, 5]) expect(split(input, size)).toEqual(whole);
  });

  it('does not cut a progress bar that never prints a newline into stale pieces', () => {
    const updates = Array.from(
      { length: 401 },
      (_, i) => `\rtraining: ${i}/400 ${'#'.repeat(Math.floor(i / 10))}`,
    );
    const lines: string[] = [];
    const splitter = new LineSplitter((l) => lines.push(l), 1024);
    for (const update of updates) splitter.push(Buffer.from(update));
    splitter.push(Buffer.from('\nTraceback: the real error\n'));
    expect(lines).toEqual([`training: 400/400 ${'#'.repeat(40)}`, 'Traceback: the real error']);
  });

  it("with a closed gate, counts a chunk's lines but its last few instead of handing each on", () => {
    const lines: string[] = [];
    let skipped = 0;
    let open = true;
    const gate = { wanted: () => open, skipped: (n: number) => (skipped += n), keepLast: 3 };
    const splitter = new LineSplitter((l) => lines.push(l), 1024, gate);
    splitter.push(Buffer.from('a\nb\n'));
    open = false;
    // Ten complete lines and a partial one: seven counted, the last three and the partial handed on.
    splitter.push(Buffer.from(`${Array.from({ length: 10 }, (_, i) => `n${i}`).join('\n')}\npart`));
    expect(skipped).toBe(7);
    splitter.push(Buffer.from('ial\r\n\n'));
    // Fewer complete lines than are kept: nothing to skip.
    expect(skipped).toBe(7);
    splitter.end();
    expect(lines).toEqual(['a', 'b', 'n7', 'n8', 'n9', 'partial', '']);
  });

  it('with a gate, loses no line to the count: skipped and handed on add up to every line', () => {
    const input = Buffer.from(Array.from({ length: 5000 }, (_, i) => `line ${i}\r\n`).join('') + 'last');
    for (const size of [1, 7, 100, 4096]) {
      let handed = 0;
      let skipped = 0;
      let calls = 0;
      // Closed two pushes in three, as a rate limit would be.
      const gate = { wanted: () => calls++ % 3 === 0, skipped: (n: number) => (skipped += n), keepLast: 20 };
      const seen: string[] = [];
      const splitter = new LineSplitter(
        (l) => {
          handed++;
          seen.push(l);
        },
        1024,
        gate,
      );
      for (let at = 0; at < input.length; at += size) splitter.push(input.subarray(at, at + size));
      splitter.end();
      expect(handed + skipped).toBe(5001);
      expect(seen.at(-1)).toBe('last');
      expect(seen.at(-2)).toBe('line 4999');
    }
  });
});
