import { describe, expect, it } from '@jest/globals';
import { isDeepStrictEqual } from 'node:util';
import { SeededRandom } from '../ml/seeded-random.js';
import { NumberArray, parseJsonBody } from './oip-json.js';
import { ServeError } from './serve.errors.js';

/** parseJsonBody's value with NumberArrays as the arrays JSON.parse makes (-0 stays -0). */
const plain = (value: unknown): unknown =>
  value instanceof NumberArray
    ? value.toJSON()
    : Array.isArray(value)
      ? value.map(plain)
      : typeof value === 'object' && value !== null
        ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]))
        : value;

type Outcome = { value: unknown } | { error: string };

const outcome = (parse: () => unknown): Outcome => {
  try {
    return { value: plain(parse()) };
  } catch (err) {
    return { error: (err as Error).constructor.name };
  }
};

/** Both parsers' outcomes for a body, compared with Object.is on every number (-0 included). */
function expectSameAsJsonParse(text: string | Buffer): void {
  const body = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  const ours = outcome(() => parseJsonBody(body));
  const v8 = outcome(() => JSON.parse(body.toString('utf8')));
  if (!isDeepStrictEqual(ours, v8)) {
    // The body in the message makes a failing random case reproducible.
    expect({ body: body.toString('utf8'), ours }).toEqual({ body: body.toString('utf8'), ours: v8 });
  }
}

/** Random number text in every form JSON allows, weighted towards what clients send. */
function numberText(random: SeededRandom): string {
  const sign = random.next() < 0.4 ? '-' : '';
  switch (random.int(8)) {
    case 0:
      return `${sign}${random.int(1000)}`;
    case 1:
      return `${sign}0.${String(random.int(1e6)).padStart(random.int(12) + 1, '0')}`;
    case 2: // up to 17 significant digits: past the exact fast path
      return `${sign}${random.int(1e9)}.${random.int(1e9)}`;
    case 3:
      return `${sign}${random.int(100)}.${random.int(100)}${'eE'[random.int(2)]}${['', '+', '-'][random.int(3)]}${random.int(400)}`;
    case 4:
      return `${sign}${'9'.repeat(random.int(30) + 1)}`;
    case 5:
      return `${sign}0.${'0'.repeat(random.int(30))}${random.int(1000) + 1}`;
    default:
      return `${sign}${Number((random.next() * 10 ** random.int(8)).toPrecision(random.int(15) + 1))}`;
  }
}

/** A random JSON document shaped like inference requests, with odd strings and whitespace. */
function documentText(random: SeededRandom, depth = 0): string {
  const space = () => [' ', '', '', '\n  ', '\t', '\r\n'][random.int(6)];
  const row = (n: number) =>
    `[${space()}${Array.from({ length: n }, () => numberText(random)).join(`${space()},${space()}`)}${space()}]`;
  const kind = depth > 3 ? random.int(3) : random.int(8);
  switch (kind) {
    case 0:
      return numberText(random);
    case 1:
      return JSON.stringify(
        ['name', 'FP32', 'é', 'tab\there', 'quote " and \\', '\u2028', '😀', ''][random.int(8)],
      );
    case 2:
      return ['true', 'false', 'null'][random.int(3)];
    case 3:
      return row(random.int(5));
    case 4: {
      // regular or ragged nesting
      const rows = random.int(4) + 1;
      const width = random.int(3) + 1;
      return `[${Array.from({ length: rows }, () => row(random.next() < 0.8 ? width : random.int(4))).join(',')}]`;
    }
    case 5:
      return `[${Array.from({ length: random.int(4) }, () => documentText(random, depth + 1)).join(',')}]`;
    default: {
      const keys = ['data', 'name', 'shape', 'inputs', 'data', 'parameters', 'é', 'constructor', 'data'];
      const members = Array.from(
        { length: random.int(5) },
        () =>
          `${space()}${JSON.stringify(keys[random.int(keys.length)])}${space()}:${space()}${documentText(random, depth + 1)}`,
      );
      return `{${members.join(',')}${space()}}`;
    }
  }
}

describe('parseJsonBody', () => {
  it('reads a request as JSON.parse does, with the numbers of its data in one flat array', () => {
    const body = Buffer.from(
      '{"id":"r1","inputs":[{"name":"x","shape":[2,3],"datatype":"FP32",' +
        '"data":[[1.5,-0.25,3],[4e2,-0,0.000001]]},{"name":"y","data":[7,8]}]}',
    );
    const parsed = parseJsonBody(body) as { inputs: { data: NumberArray }[] };
    const [x, y] = parsed.inputs;
    expect(x.data).toBeInstanceOf(NumberArray);
    expect(x.data.dims).toEqual([2, 3]);
    expect(Array.from(x.data.values)).toEqual([1.5, -0.25, 3, 400, -0, 0.000001]);
    expect(Object.is(x.data.values[4], -0)).toBe(true);
    expect(y.data.dims).toEqual([2]);
    expect(plain(parsed)).toEqual(JSON.parse(body.toString()));
  });

  it('leaves data that is not regularly nested numbers as JSON.parse makes it', () => {
    for (const data of [
      '[]',
      '[[1,2],[3]]',
      '[1,[2]]',
      '[[1],2]',
      '[1,"2"]',
      '[[[1]],[2]]',
      '["a"]',
      '[true]',
    ]) {
      const parsed = parseJsonBody(Buffer.from(`{"data":${data}}`)) as { data: unknown };
      expect([data, parsed.data]).toEqual([data, JSON.parse(data)]);
    }
  });

  it('converts every number exactly as JSON.parse does', () => {
    const random = new SeededRandom(7);
    const texts = Array.from({ length: 200_000 }, () => numberText(random));
    const parsed = parseJsonBody(Buffer.from(`{"data":[${texts.join(',')}]}`)) as { data: NumberArray };
    const expected = JSON.parse(`[${texts.join(',')}]`) as number[];
    const wrong = texts.filter((_, i) => !Object.is(parsed.data.values[i], expected[i]));
    expect(wrong).toEqual([]);
  });

  it('matches JSON.parse on random request-shaped documents', () => {
    const random = new SeededRandom(11);
    for (let i = 0; i < 5_000; i++) expectSameAsJsonParse(documentText(random));
  });

  it('matches JSON.parse on damaged documents: the same value or the same SyntaxError', () => {
    const random = new SeededRandom(13);
    const junk = ['', ',', ']', '}', '[', '"', '\\', '.', '-', 'e', '0', ' ', '\u0001', '\u00ff'];
    for (let i = 0; i < 5_000; i++) {
      const text = documentText(random);
      const at = random.int(text.length + 1);
      const cut = random.int(3);
      expectSameAsJsonParse(text.slice(0, at) + junk[random.int(junk.length)] + text.slice(at + cut));
    }
  });

  it('keeps JSON.parse’s edge cases', () => {
    for (const text of [
      '',
      ' ',
      '\ufeff{}',
      '{"a":1,"a":2}',
      '{"data":[01]}',
      '{"data":[1.]}',
      '{"data":[.5]}',
      '{"data":[+1]}',
      '{"data":[1e]}',
      '{"data":[-]}',
      '{"data":[1e999,-1e999]}',
      '{"data":[NaN]}',
      '{"data":[1,]}',
      '{"data":[1 2]}',
      '{"x":"\\ud800"}',
      '{"x":"a\nb"}',
      '{"x":"\\u00e9\\n"}',
      '['.repeat(100) + ']'.repeat(100),
      '{"data":' + '['.repeat(70) + '1' + ']'.repeat(70) + '}',
      '123',
      'nul',
      'true false',
    ]) {
      expectSameAsJsonParse(text);
    }
    expectSameAsJsonParse(Buffer.from([0x7b, 0x22, 0x78, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d])); // bad UTF-8
  });

  it('refuses a __proto__ key, wherever and however written, rather than parsing the body again', () => {
    const data = `[${Array.from({ length: 1000 }, (_, i) => i / 8).join(',')}]`;
    for (const text of [
      '{"__proto__":{"polluted":true}}',
      `{"inputs":[{"name":"x","data":${data}}],"__proto__":1}`,
      `{"inputs":[{"name":"x","data":${data},"parameters":{"__proto__":{}}}]}`,
      '{"\\u005f_proto__":1}',
    ]) {
      let error: unknown;
      try {
        parseJsonBody(Buffer.from(text));
      } catch (err) {
        error = err;
      }
      expect([text, error]).toEqual([
        text,
        new ServeError(
          'BAD_REQUEST',
          "the request body has a '__proto__' key, which no inference request takes",
        ),
      ]);
      expect((error as ServeError).code).toBe('BAD_REQUEST');
    }
  });
});
