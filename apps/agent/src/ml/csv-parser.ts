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

/**
 * Calls onRecord with each record's fields and the (1-based) line the record starts on. Returns
 * the number of records.
 */
export function parseCsv(text: string, onRecord: (fields: string[], line: number) => void): number {
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
        let value = '';
        let from = i + 1;
        for (;;) {
          const q = text.indexOf('"', from);
          if (q === -1) throw new CsvSyntaxError(start, 'a quoted field is never closed');
          value += text.slice(from, q);
          line += countLineBreaks(text, from, q);
          if (text.charCodeAt(q + 1) === QUOTE) {
            value += '"';
            from = q + 2;
            continue;
          }
          i = q + 1;
          break;
        }
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
        field = text.slice(i, j);
        i = j;
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

function countLineBreaks(text: string, from: number, to: number): number {
  let count = 0;
  for (let k = from; k < to; k++) {
    const c = text.charCodeAt(k);
    if (c === LF || (c === CR && text.charCodeAt(k + 1) !== LF)) count++;
  }
  return count;
}
