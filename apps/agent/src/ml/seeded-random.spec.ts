import { describe, expect, it } from '@jest/globals';
import { SeededRandom, deriveSeed } from './seeded-random.js';

describe('SeededRandom', () => {
  it('repeats its sequence for a seed and differs across seeds', () => {
    const take = (seed: number) =>
      Array.from(
        { length: 5 },
        (
          (r) => () =>
            r.next()
        )(new SeededRandom(seed)),
      );
    expect(take(1)).toEqual(take(1));
    expect(take(1)).not.toEqual(take(2));
    for (const x of take(3)) expect(x >= 0 && x < 1).toBe(true);
  });

  it('shuffles into a permutation, the same one for the same seed', () => {
    const shuffled = new SeededRandom(9).shuffle(Int32Array.from({ length: 50 }, (_, i) => i));
    expect([...shuffled].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(shuffled).not.toEqual(Int32Array.from({ length: 50 }, (_, i) => i));
    expect(new SeededRandom(9).shuffle(Int32Array.from({ length: 50 }, (_, i) => i))).toEqual(shuffled);
  });

  it('spreads int(n) over the whole range', () => {
    const random = new SeededRandom(4);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[random.int(4)]++;
    for (const c of counts) expect(c).toBeGreaterThan(900);
  });
});

describe('deriveSeed', () => {
  it('gives distinct, repeatable sub-seeds', () => {
    expect(deriveSeed(1, 0)).toBe(deriveSeed(1, 0));
    const seeds = new Set([0, 1, 2, 3].flatMap((s) => [0, 1, 2, 3].map((stream) => deriveSeed(s, stream))));
    expect(seeds.size).toBe(16);
  });
});
