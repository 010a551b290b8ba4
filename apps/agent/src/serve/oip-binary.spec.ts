import { afterEach, describe, expect, it, jest } from '@jest/globals';
import ort from 'onnxruntime-node';
import { BinaryReader, tensorBytes } from './oip-binary.js';

/** BYTES elements as the extension lays them out: a 4-byte little-endian length, then the bytes. */
const strings = (...values: string[]) =>
  Buffer.concat(
    values.flatMap((s) => {
      const text = Buffer.from(s);
      const length = Buffer.alloc(4);
      length.writeUInt32LE(text.length);
      return [length, text];
    }),
  );

const readStrings = (bytes: Buffer, count: number) =>
  new BinaryReader(bytes).tensorData('text', 'BYTES', count, bytes.length);

describe('BinaryReader: BYTES', () => {
  it('reads the elements of the shape', () => {
    expect(readStrings(strings('héllo', '', 'x'), 3)).toEqual(['héllo', '', 'x']);
  });

  it('refuses a shape with more elements than the bytes can hold, before reading any', () => {
    // 8 MiB of zeros would be 2M empty elements: refused from the count, not found by reading.
    expect(() => readStrings(Buffer.alloc(8), 3)).toThrow(
      "input 'text': the shape holds 3 BYTES elements, more than 8 bytes can (each takes a 4-byte length)",
    );
  });

  it('stops at the shape’s count and refuses what follows', () => {
    const bytes = Buffer.concat([strings('a'), Buffer.alloc(4 * 1000)]);
    expect(() => readStrings(bytes, 1)).toThrow(
      "input 'text': the binary data has more than the shape's 1 elements",
    );
    expect(() => readStrings(strings('abcd'), 2)).toThrow(
      "input 'text': the shape holds 2 elements but the binary data has 1",
    );
  });
});

describe('tensorBytes: BYTES', () => {
  afterEach(() => {
    jest.restoreAllMocks();
  });

  it('lays out every element, multi-byte text included', () => {
    const values = ['héllo', '', '😀', 'plain'];
    expect(tensorBytes(new ort.Tensor('string', values, [4]))).toEqual(strings(...values));
  });

  it('builds one buffer for the whole tensor, not one per element', () => {
    const values = Array.from({ length: 2000 }, (_, i) => `v${i}`);
    const tensor = new ort.Tensor('string', values, [values.length]);
    const made = [
      jest.spyOn(Buffer, 'from'),
      jest.spyOn(Buffer, 'alloc'),
      jest.spyOn(Buffer, 'allocUnsafe'),
      jest.spyOn(Buffer, 'concat'),
    ];
    const bytes = tensorBytes(tensor);
    expect(made.reduce((n, spy) => n + spy.mock.calls.length, 0)).toBe(1);
    jest.restoreAllMocks();
    expect(bytes).toEqual(strings(...values));
  });
});
