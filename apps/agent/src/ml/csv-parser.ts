/**
 * A small RFC 4180 CSV parser. No CSV library is installed in this workspace and the agent's
 * dependencies are kept few, so this is ours: comma-separated, fields optionally in double quotes
 * (a doubled quote inside is a quote; commas and line breaks inside are data), records ended by
 * CRLF, LF or CR. Blank lines are skipped. Malformed quoting is an error with its line number.
 */

export class CsvSyntaxError extends Error {
  override readonly name = 'CsvSyntaxError';
  constructor(
    readonly line: number,
    problem: string,
  ) {
    super(`line ${line}: ${problem}`);
  }
}

const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

/** Bounds on one record, checked as it is read, before its fields are collected. */
export interface CsvLimits {
  readonly maxFields: number;
  readonly maxFieldChars: number;
}

const UNLIMITED: CsvLimits = { maxFields: Infinity, maxFieldChars: Infinity };

/**
 * Calls onRecord with each record's fields and the (1-based) line the record starts on. Returns
 * the number of records. A record over `limits` is a CsvSyntaxError as soon as it passes them.
 */
export function parseCsv(
  text: string,
  onRecord: (fields: string[], line: number) => void,
  limits: CsvLimits = UNLIMITED,
): number {
  let i = 0;
  let line = 1;
  let records = 0;
  const n = text.length;
  while (i < n) {
    const start = line;
    // A blank line is not a record.
    const c0 = text.charCodeAt(i);
    if (c0 === LF || c0 === CR) {
      i += c0 === CR && text.charCodeAt(i + 1) === LF ? 2 : 1;
      line++;
      continue;
    }
    const fields: string[] = [];
    for (;;) {
      let field: string;
      if (text.charCodeAt(i) === QUOTE) {
        // The closing quote first (nothing allocated), then the field's text in one go.
        const open = i + 1;
        let from = open;
        let doubled = false;
        let close: number;
        for (;;) {
          close = text.indexOf('"', from);
          if (close === -1) throw new CsvSyntaxError(start, 'a quoted field is never closed');
          if (text.charCodeAt(close + 1) !== QUOTE) break;
          doubled = true;
          from = close + 2;
        }
        if (close - open > limits.maxFieldChars) throw tooLong(start, limits);
        const value = doubled ? unescapeQuotes(text, open, close) : text.slice(open, close);
        line += countLineBreaks(text, open, close);
        i = close + 1;
        const next = i < n ? text.charCodeAt(i) : LF;
        if (next !== COMMA && next !== LF && next !== CR) {
          throw new CsvSyntaxError(
            line,
            'unexpected text after a closing quote (quotes inside a field must be doubled)',
          );
        }
        field = value;
      } else {
        let j = i;
        for (; j < n; j++) {
          const c = text.charCodeAt(j);
          if (c === COMMA || c === LF || c === CR) break;
          if (c === QUOTE) {
            throw new CsvSyntaxError(
              line,
              'a quote inside an unquoted field (quote the whole field and double the quote)',
            );
          }
        }
        if (j - i > limits.maxFieldChars) throw tooLong(start, limits);
        field = text.slice(i, j);
        i = j;
      }
      if (fields.length === limits.maxFields) {
        throw new CsvSyntaxError(start, `a record has more than ${limits.maxFields} fields`);
      }
      fields.push(field);
      if (i >= n) break;
      const c = text.charCodeAt(i);
      if (c === COMMA) {
        i++;
        continue;
      }
      // End of record.
      i += c === CR && text.charCodeAt(i + 1) === LF ? 2 : 1;
      line++;
      break;
    }
    records++;
    onRecord(fields, start);
  }
  return records;
}

const tooLong = (line: number, limits: CsvLimits) =>
  new CsvSyntaxError(line, `a field is longer than ${limits.maxFieldChars} characters`);

/**
 * The text of a quoted field, its doubled quotes made single. Built a few thousand pieces at a
 * time: a string per doubled quote (and replaceAll, likewise) held one object per quote, and a
 * field of a hundred million `""` took gigabytes.
 */
function unescapeQuotes(text: string, open: number, close: number): string {
  let value = '';
  let pieces: string[] = [];
  for (let from = open; ;) {
    const q = text.indexOf('""', from);
    const end = q === -1 || q >= close ? close : q;
    pieces.push(text.slice(from, end));
    if (end === close) return value + pieces.join('');
    pieces.push('"');
    from = q + 2;
    if (pieces.length >= 8192) {
      value += pieces.join('');
      pieces = [];
    }
  }
}

function countLineBreaks(text: string, from: number, to: number): number {
  let count = 0;
  for (let k = from; k < to; k++) {
    const c = text.charCodeAt(k);
    if (c === LF || (c === CR && text.charCodeAt(k + 1) !== LF)) count++;
  }
  return count;
}
