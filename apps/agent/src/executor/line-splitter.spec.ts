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
});
