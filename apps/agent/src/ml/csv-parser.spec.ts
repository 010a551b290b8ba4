import { describe, expect, it } from '@jest/globals';
import { CsvSyntaxError, parseCsv } from './csv-parser.js';

function records(text: string): [string[], number][] {
  const out: [string[], number][] = [];
  expect(parseCsv(text, (fields, line) => void out.push([fields, line]))).toBe(out.length);
  return out;
}

describe('parseCsv', () => {
  it('splits records on LF, CRLF and CR, and skips blank lines', () => {
    expect(records('a,b\n1,2\r\n3,4\r5,6\n\n7,8')).toEqual([
      [['a', 'b'], 1],
      [['1', '2'], 2],
      [['3', '4'], 3],
      [['5', '6'], 4],
      [['7', '8'], 6],
    ]);
  });

  it('keeps empty fields, leading, inner and trailing', () => {
    expect(records(',x,,\n')).toEqual([[['', 'x', '', ''], 1]]);
  });

  it('reads quoted fields with commas, doubled quotes and line breaks, counting lines right', () => {
    expect(records('"a,1","say ""hi""","two\nlines"\nnext,"",x\n')).toEqual([
      [['a,1', 'say "hi"', 'two\nlines'], 1],
      [['next', '', 'x'], 3],
    ]);
  });

  it('reads a field of many thousand doubled quotes whole, in order', () => {
    const inner = Array.from({ length: 20_000 }, (_, k) => `${k}""`).join('');
    const [[fields]] = records(`"${inner}",end\n`);
    expect(fields).toEqual([inner.replaceAll('""', '"'), 'end']);
  });

  it('stops a record at the limits, as soon as it passes them, with the line it starts on', () => {
    const limits = { maxFields: 3, maxFieldChars: 4 };
    const seen: string[][] = [];
    const parse = (text: string) => parseCsv(text, (fields) => void seen.push(fields), limits);
    expect(parse('a,b,c\n1,2,3\n')).toBe(2);
    expect(() => parse('a,b,c\n1,2,3,4,5,6\n')).toThrow(
      new CsvSyntaxError(2, 'a record has more than 3 fields'),
    );
    expect(() => parse('a\n\n12345\n')).toThrow(new CsvSyntaxError(3, 'a field is longer than 4 characters'));
    expect(() => parse('a\n"12\n345"\n')).toThrow(
      new CsvSyntaxError(2, 'a field is longer than 4 characters'),
    );
    expect(() => parse('a\n"1""2"\n')).not.toThrow(); // 4 characters between the quotes, 3 of data
  });

  it('reports malformed quoting with the line', () => {
    expect(() => records('a,b\n1,"open\n2,3\n')).toThrow(
      new CsvSyntaxError(2, 'a quoted field is never closed'),
    );
    expect(() => records('a\n"x"y\n')).toThrow(/^line 2: unexpected text after a closing quote/);
    expect(() => records('a\nx"y\n')).toThrow(/^line 2: a quote inside an unquoted field/);
  });
});
