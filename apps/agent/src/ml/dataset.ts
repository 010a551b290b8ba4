/**
 * Reads a tabular dataset (CSV with a header row, or JSON Lines) into numeric arrays for training.
 * Features must be numbers; the target is picked by name: a number for regression, a class label
 * (text, boolean or number) for classification, mapped to class indices in a stable order. The
 * fingerprint (sha256 of the file's bytes and the row count) identifies the data without it.
 * Error messages name lines and columns but never quote cell values: they travel to the control
 * plane as the job's failure reason, and the data stays here.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { TRAIN_LIMITS, type DatasetFingerprint, type TrainTask } from '@hearth/contracts';
import { CsvSyntaxError, parseCsv } from './csv-parser.js';

export type DatasetFormat = 'csv' | 'jsonl';

/**
 * The shape of a record a dataset may have, checked as it is read. A training table uses at most
 * TRAIN_LIMITS.maxFeatures columns, with short cells; a hostile file (one line of 80 million
 * fields, a 200 MB JSON document read as JSON Lines) grew one array or one parse past the dataset
 * worker's heap, and V8 then aborts the whole agent, not the worker (Node issue 47224; ML-jobs
 * audit, finding 2). These bounds stop such a file at its first record, with a reason.
 */
export const DATASET_SHAPE = Object.freeze({
  /** Fields of one CSV record: 16 × TRAIN_LIMITS.maxFeatures, for columns besides the features. */
  maxFields: 16 * TRAIN_LIMITS.maxFeatures,
  /** Characters of one CSV field. */
  maxFieldChars: 64 * 1024,
  /** Characters of one JSON Lines line. */
  maxLineChars: 1024 * 1024,
});

/**
 * Bad input the user must fix; the message says what and where, and goes to the control plane as
 * the job's reason, so it never quotes the file's content. `localDetail` may (the header's names,
 * which are the first row's values when a file has no header): the agent logs it on its own
 * machine only.
 */
export class DatasetError extends Error {
  override readonly name = 'DatasetError';
  constructor(
    message: string,
    readonly localDetail?: string,
  ) {
    super(message);
  }
}

/** A column the header does not have. Its names stay local: in a file without a header they are data. */
export function missingColumn(what: string, name: string, columns: readonly string[], line: number) {
  return new DatasetError(
    `the ${what} column "${name}" is not in the dataset's header (line ${line}, ${columns.length} ` +
      `column${columns.length === 1 ? '' : 's'}; the agent's log lists them). Does the file start with a header row?`,
    `the header's columns are ${listColumns(columns)}`,
  );
}

export interface DatasetOptions {
  target: string;
  /** The feature columns; absent: every column but the target, in file order. */
  features?: readonly string[];
  task: TrainTask;
  /** Absent: from the extension (.csv; .jsonl or .ndjson). */
  format?: DatasetFormat;
  maxBytes: number;
}

export interface Dataset {
  featureNames: string[];
  /** Row-major, rows × featureNames.length. */
  features: Float32Array;
  /** Regression: the target values; classification: indices into labels. */
  targets: Float32Array;
  /** Classification: the class names, in index order; null for regression. */
  labels: string[] | null;
  rows: number;
  fingerprint: DatasetFingerprint;
}

/** Reads and checks the file at `filePath` (already resolved against the local policy). */
export async function loadDataset(filePath: string, options: DatasetOptions): Promise<Dataset> {
  const { text, sha256 } = await readDatasetText(filePath, options.maxBytes);
  const builder = new DatasetBuilder(options);
  readRows(text, options.format ?? formatFromExtension(filePath), builder);
  return builder.finish(sha256);
}

/** Receives a table's header (column names) once, then each row's cells. */
export interface TableSink {
  setColumns(columns: readonly string[], line: number): void;
  addRow(cell: (columnIndex: number) => unknown, line: number): void;
}

/** The dataset file as text, with the sha256 of its bytes; refuses a file over maxBytes or not UTF-8. */
export async function readDatasetText(
  filePath: string,
  maxBytes: number,
): Promise<{ text: string; sha256: string }> {
  const bytes = await readBounded(filePath, maxBytes);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_STRING_TOO_LONG' || err instanceof RangeError)
      throw new DatasetError(`the dataset (${bytes.length} bytes) is too large to load as one text`);
    throw new DatasetError('the dataset is not UTF-8 text');
  }
  if (text.trim() === '') throw new DatasetError('the dataset file is empty');
  return { text, sha256 };
}

/** Parses CSV (header row first) or JSON Lines into the sink; ragged rows are errors. */
export function readRows(text: string, format: DatasetFormat, sink: TableSink): void {
  if (format === 'csv') readCsv(text, sink);
  else readJsonLines(text, sink);
}

export function formatFromExtension(filePath: string): DatasetFormat {
  const ext = path.extname(filePath).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  throw new DatasetError(
    `cannot tell the dataset's format from its extension "${ext}": name it .csv or .jsonl, or set dataset.format`,
  );
}

/**
 * The file's bytes. `filePath` is the real path the local policy checked (inside a data root, a
 * regular file); what is opened must still be that file. O_NOFOLLOW refuses a link swapped in for
 * the file itself, but not for a directory above it, so the opened file's own path is read back
 * from /proc and compared (on Linux; elsewhere only the rest is checked). O_NONBLOCK: a FIFO swapped
 * in is opened at once and refused, where it held a thread of libuv's pool until a writer came.
 */
async function readBounded(filePath: string, maxBytes: number): Promise<Buffer> {
  const flags = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | (fs.constants.O_NONBLOCK ?? 0);
  const handle = await fs.promises.open(filePath, flags).catch((err) => {
    throw new DatasetError(`cannot open the dataset (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  });
  try {
    const stat = await handle.stat();
    const opened = await fs.promises.realpath(`/proc/self/fd/${handle.fd}`).catch(() => null);
    if (!stat.isFile() || (opened !== null && opened !== filePath)) {
      throw new DatasetError(
        'the dataset changed between the check of the local policy and its reading (it is no longer that regular file)',
      );
    }
    const { size } = stat;
    if (size > maxBytes) {
      throw new DatasetError(
        `the dataset is ${size} bytes, over this agent's limit of ${maxBytes} bytes ("maxDatasetBytes" in the local policy)`,
      );
    }
    const buffer = Buffer.alloc(size);
    let read = 0;
    while (read < size) {
      const { bytesRead } = await handle.read(buffer, read, size - read, read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    return buffer.subarray(0, read);
  } finally {
    await handle.close();
  }
}

function readCsv(text: string, builder: TableSink): void {
  let header: string[] | null = null;
  try {
    parseCsv(
      text,
      (fields, line) => {
        if (header === null) {
          header = fields.map((f) => f.trim());
          builder.setColumns(header, line);
          return;
        }
        if (fields.length !== header.length) {
          throw new DatasetError(
            `line ${line} has ${fields.length} fields but the header has ${header.length} (ragged rows)`,
          );
        }
        builder.addRow((index) => fields[index], line);
      },
      DATASET_SHAPE,
    );
  } catch (err) {
    if (err instanceof CsvSyntaxError) throw new DatasetError(`the CSV is malformed at ${err.message}`);
    throw err;
  }
}

function readJsonLines(text: string, builder: TableSink): void {
  let keys: string[] | null = null;
  let firstKeys: Set<string> | null = null;
  // Line by line with indexOf, not split(): an array of every line of a large file held them all.
  let lineNo = 0;
  for (let at = 0; at < text.length;) {
    const end = text.indexOf('\n', at);
    const stop = end === -1 ? text.length : end;
    lineNo++;
    if (stop - at > DATASET_SHAPE.maxLineChars) {
      throw new DatasetError(
        `line ${lineNo} is longer than ${DATASET_SHAPE.maxLineChars} characters (JSON Lines datasets hold one record per line)`,
      );
    }
    const raw = text.slice(at, stop).trim(); // and the \r of a CRLF
    at = stop + 1;
    if (raw === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw new DatasetError(`line ${lineNo} is not valid JSON`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new DatasetError(
        `line ${lineNo} is not a JSON object (JSON Lines datasets hold one object per line)`,
      );
    }
    const record = value as Record<string, unknown>;
    const recordKeys = Object.keys(record);
    if (keys === null) {
      keys = recordKeys;
      firstKeys = new Set(keys);
      builder.setColumns(keys, lineNo);
    } else {
      const first = keys;
      const absent = first.find((k) => !Object.hasOwn(record, k));
      if (absent !== undefined) {
        throw new DatasetError(
          `line ${lineNo} lacks the field "${absent}" that the first line has (ragged rows)`,
        );
      }
      // Every key of the first line is here (above): another key exists exactly when the counts differ.
      if (recordKeys.length !== first.length) {
        const extra = recordKeys.find((k) => !firstKeys!.has(k));
        throw new DatasetError(
          `line ${lineNo} has ${recordKeys.length - first.length} field(s) that the first line has not (ragged rows)`,
          `the first of them is ${JSON.stringify(extra?.slice(0, 64))}`,
        );
      }
    }
    const columns = keys;
    builder.addRow((index) => record[columns[index]], lineNo);
  }
}

/** Cells arrive as CSV text or JSON values; the builder turns them into numbers column by column. */
class DatasetBuilder implements TableSink {
  private featureIndex: number[] = [];
  private featureColumns: ColumnRef[] = [];
  private targetIndex = -1;
  private featureNames: string[] = [];
  private features = new Float32Array(1024);
  private targets = new Float32Array(1024);
  private rows = 0;
  /** Classification: label → provisional index (first-seen order), remapped in finish(). */
  private readonly labelIndex = new Map<string, number>();

  constructor(private readonly options: DatasetOptions) {}

  setColumns(columns: readonly string[], line: number): void {
    const { target } = this.options;
    const named = this.options.features !== undefined;
    const find = (name: string, jobsName: boolean) => {
      const at = columns.indexOf(name);
      if (at !== -1 && columns.indexOf(name, at + 1) !== -1)
        throw duplicateColumn(name, jobsName, columns, line);
      return at;
    };
    this.targetIndex = find(target, true);
    if (this.targetIndex === -1) {
      throw missingColumn('target', target, columns, line);
    }
    const names = this.options.features ?? columns.filter((c) => c !== target);
    if (names.length === 0)
      throw new DatasetError(`the dataset has no feature columns besides the target "${target}"`);
    if (names.length > TRAIN_LIMITS.maxFeatures) {
      throw new DatasetError(
        `the dataset has ${names.length} feature columns; at most ${TRAIN_LIMITS.maxFeatures} are supported: ` +
          `choose them with "features"`,
      );
    }
    this.featureNames = names.map((name) => {
      if (name === '') throw new DatasetError(`a column has no name in the header (line ${line})`);
      if (name.length > TRAIN_LIMITS.maxColumnNameChars) {
        throw new DatasetError(`a column name is longer than ${TRAIN_LIMITS.maxColumnNameChars} characters`);
      }
      return name;
    });
    this.featureIndex = names.map((name) => {
      if (name === target) throw new DatasetError(`the target column "${target}" cannot also be a feature`);
      const at = find(name, named);
      if (at === -1) {
        throw missingColumn('feature', name, columns, line);
      }
      return at;
    });
    this.featureColumns = names.map((name, f) =>
      named ? namedColumn(name) : fileColumn(name, this.featureIndex[f]),
    );
  }

  addRow(cell: (columnIndex: number) => unknown, line: number): void {
    const width = this.featureIndex.length;
    this.ensureCapacity(this.rows + 1);
    const base = this.rows * width;
    for (let f = 0; f < width; f++) {
      this.features[base + f] = toNumber(
        cell(this.featureIndex[f]),
        this.featureColumns[f],
        line,
        'features',
      );
    }
    const raw = cell(this.targetIndex);
    this.targets[this.rows] =
      this.options.task === 'regression'
        ? toNumber(raw, namedColumn(this.options.target), line, 'a regression target')
        : this.classOf(raw, line);
    this.rows++;
  }

  finish(sha256: string): Dataset {
    const { rows } = this;
    if (rows === 0) throw new DatasetError('the dataset has a header but no data rows');
    const targets = this.targets.slice(0, rows);
    let labels: string[] | null = null;
    if (this.options.task !== 'regression') {
      const seen = [...this.labelIndex.keys()];
      labels = sortLabels(seen);
      const need = this.options.task === 'binary' ? 'exactly 2' : 'at least 2';
      if (labels.length < 2 || (this.options.task === 'binary' && labels.length !== 2)) {
        const hint = this.options.task === 'binary' && labels.length > 2 ? ' (use the multiclass task)' : '';
        throw new DatasetError(
          `the target column "${this.options.target}" has ${labels.length} distinct value(s); ` +
            `a ${this.options.task} task needs ${need}${hint}`,
        );
      }
      const remap = seen.map((label) => labels!.indexOf(label));
      for (let r = 0; r < rows; r++) targets[r] = remap[targets[r]];
    }
    return {
      featureNames: this.featureNames,
      features: this.features.slice(0, rows * this.featureIndex.length),
      targets,
      labels,
      rows,
      fingerprint: { sha256, rows },
    };
  }

  private classOf(raw: unknown, line: number): number {
    const label = toLabel(raw, namedColumn(this.options.target), line);
    let index = this.labelIndex.get(label);
    if (index === undefined) {
      index = this.labelIndex.size;
      if (index >= TRAIN_LIMITS.maxClasses) {
        throw new DatasetError(
          `the target column "${this.options.target}" has more than ${TRAIN_LIMITS.maxClasses} distinct values; ` +
            `is it a regression target?`,
        );
      }
      this.labelIndex.set(label, index);
    }
    return index;
  }

  private ensureCapacity(rows: number): void {
    const width = this.featureIndex.length;
    if (rows * width > this.features.length) {
      const grown = new Float32Array(Math.max(rows * width, this.features.length * 2));
      grown.set(this.features);
      this.features = grown;
    }
    if (rows > this.targets.length) {
      const grown = new Float32Array(this.targets.length * 2);
      grown.set(this.targets);
      this.targets = grown;
    }
  }
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const FLOAT32_MAX = 3.4028234663852886e38;

/** Whether a cell holds a number toNumber accepts (CSV text or a JSON number). */
export function isNumericCell(raw: unknown): boolean {
  if (typeof raw === 'number') return Number.isFinite(raw);
  return typeof raw === 'string' && NUMBER.test(raw.trim());
}

/**
 * A column as a reason names it: by the name the job gave (the target, or features it listed), or
 * else by its place in the file, since a header's names are the first row's values in a file
 * without a header (ML-jobs audit, finding 7). The file's name for it goes to the local log.
 */
export interface ColumnRef {
  /** What the reason says: a quoted name of the job's, or a 1-based column number. */
  readonly label: string;
  /** For the local log only, when the label is a number. */
  readonly localName: string | null;
}

export const namedColumn = (name: string): ColumnRef => ({ label: JSON.stringify(name), localName: null });
export const fileColumn = (name: string, index: number): ColumnRef => ({
  label: String(index + 1),
  localName: name,
});

function cellError(column: ColumnRef, line: number, problem: string): DatasetError {
  return new DatasetError(
    `line ${line}, column ${column.label}: ${problem}`,
    column.localName === null
      ? undefined
      : `column ${column.label} is ${JSON.stringify(column.localName.slice(0, 64))}`,
  );
}

export function toNumber(raw: unknown, column: ColumnRef, line: number, what: string): number {
  let value: number;
  if (typeof raw === 'string') {
    const text = raw.trim();
    if (text === '') throw missing(column, line);
    if (!NUMBER.test(text)) throw notNumeric(column, line, what);
    value = Number(text);
  } else if (typeof raw === 'number') {
    value = raw;
  } else if (raw === null || raw === undefined) {
    throw missing(column, line);
  } else {
    throw notNumeric(column, line, what);
  }
  if (!Number.isFinite(value) || Math.abs(value) > FLOAT32_MAX) {
    throw cellError(column, line, 'the value is too large for a 32-bit float');
  }
  return value;
}

function toLabel(raw: unknown, column: ColumnRef, line: number): string {
  let label: string;
  if (typeof raw === 'string') label = canonicalNumber(raw.trim());
  else if (typeof raw === 'boolean' || typeof raw === 'number') label = String(raw);
  else if (raw === null || raw === undefined) throw missing(column, line);
  else throw cellError(column, line, 'a class label must be text, a number or a boolean');
  if (label === '') throw missing(column, line);
  if (label.length > TRAIN_LIMITS.maxLabelChars) {
    throw cellError(column, line, `a class label is longer than ${TRAIN_LIMITS.maxLabelChars} characters`);
  }
  return label;
}

/** Numeric labels in numeric order, anything else in code-unit order (false < true, no < yes). */
function sortLabels(labels: string[]): string[] {
  if (labels.every((l) => NUMBER.test(l)))
    return [...labels].sort((a, b) => Number(a) - Number(b) || (a < b ? -1 : 1));
  return [...labels].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

const NUMERIC = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * A label written as a number, in its one canonical form: "2.0", "02" and "2" are one class, as
 * they are when JSON Lines carries them as numbers (and "-0" is "0"). Other text is left as is.
 */
function canonicalNumber(label: string): string {
  if (!NUMERIC.test(label)) return label;
  const n = Number(label);
  return Number.isFinite(n) ? String(n) : label;
}

const missing = (column: ColumnRef, line: number) => cellError(column, line, 'the value is missing');

const notNumeric = (column: ColumnRef, line: number, what: string) =>
  cellError(column, line, `the value is not a number (${what} must be numeric)`);

/** Where a name is in the header twice: quoted when the job gave it, else by the columns' numbers. */
export function duplicateColumn(name: string, jobsName: boolean, columns: readonly string[], line: number) {
  const first = columns.indexOf(name);
  const second = columns.indexOf(name, first + 1);
  return jobsName
    ? new DatasetError(`the column "${name}" appears more than once in the header (line ${line})`)
    : new DatasetError(
        `columns ${first + 1} and ${second + 1} of the header have the same name (line ${line})`,
        `the name is ${JSON.stringify(name.slice(0, 64))}`,
      );
}

export function listColumns(columns: readonly string[]): string {
  const shown = columns.slice(0, 20).map((c) => JSON.stringify(c.slice(0, 64)));
  return shown.join(', ') + (columns.length > 20 ? `, … (${columns.length} in all)` : '');
}
