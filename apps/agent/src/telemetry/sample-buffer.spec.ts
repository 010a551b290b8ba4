import { describe, expect, it } from '@jest/globals';
import { SampleBuffer } from './sample-buffer.js';

function filled(capacity: number, ...items: number[]): SampleBuffer<number> {
  const buffer = new SampleBuffer<number>(capacity);
  for (const item of items) buffer.push(item);
  return buffer;
}

describe('SampleBuffer', () => {
  it('gives samples back oldest first, in batches', () => {
    const buffer = filled(10, 1, 2, 3, 4, 5);
    expect(buffer.take(2)).toEqual({ items: [1, 2], dropped: 0 });
    expect(buffer.take(10)).toEqual({ items: [3, 4, 5], dropped: 0 });
    expect(buffer.take(10)).toEqual({ items: [], dropped: 0 });
    expect(buffer.size).toBe(0);
  });

  it('drops the oldest when full, and reports the drops once, with the next batch', () => {
    const buffer = filled(3, 1, 2, 3, 4, 5);
    expect(buffer.size).toBe(3);
    expect(buffer.take(2)).toEqual({ items: [3, 4], dropped: 2 });
    expect(buffer.take(2)).toEqual({ items: [5], dropped: 0 });
    expect(buffer.droppedTotal).toBe(2);
  });

  it('keeps order around the end of the ring', () => {
    const buffer = filled(4, 1, 2, 3);
    buffer.take(2);
    for (const item of [4, 5, 6]) buffer.push(item);
    expect(buffer.take(10).items).toEqual([3, 4, 5, 6]);
  });

  it('puts a batch that failed to send back in front, in order, with its drop count', () => {
    const buffer = filled(5, 1, 2, 3, 4, 5, 6); // 1 dropped
    const batch = buffer.take(2);
    expect(batch).toEqual({ items: [2, 3], dropped: 1 });
    buffer.putBack(batch);
    expect(buffer.take(10)).toEqual({ items: [2, 3, 4, 5, 6], dropped: 1 });

    const again = filled(10, 1, 2, 3);
    const sent = again.take(2);
    again.push(4); // taken while the send was failing
    again.putBack(sent);
    expect(again.take(10)).toEqual({ items: [1, 2, 3, 4], dropped: 0 });
  });

  it('drops the oldest of a batch put back into a buffer that filled meanwhile', () => {
    const buffer = filled(4, 1, 2, 3);
    const batch = buffer.take(3);
    for (const item of [4, 5, 6]) buffer.push(item);
    buffer.putBack(batch);
    expect(buffer.take(10)).toEqual({ items: [3, 4, 5, 6], dropped: 2 });
    expect(buffer.droppedTotal).toBe(2);
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new SampleBuffer(0)).toThrow(RangeError);
    expect(() => new SampleBuffer(2.5)).toThrow(RangeError);
  });
});
