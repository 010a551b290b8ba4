/**
 * Reads the rows a model scores (a `batch_predict` job's input) into a float32 matrix: the same
 * files, parsing and checks as the trainer's datasets (dataset.ts), without a target column.
 *
 * Which columns: the ones named, in that order; when none are named, every column whose value in
 * the first data row is a number, in file order (a later non-numeric value in such a column is
 * then an error naming its line, not a column silently dropped). Messages never quote cell values.
 */
import { TRAIN_LIMITS, type DatasetFingerprint } from '@hearth/contracts';
import {
  DatasetError,
  duplicateColumn,
  fileColumn,
  formatFromExtension,
  isNumericCell,
  missingColumn,
  namedColumn,
  readDatasetText,
  readRows,
  toNumber,
  type ColumnRef,
  type DatasetFormat,
  type TableSink,
} from './dataset.js';

export interface FeatureTableOptions {
  /** The feature columns in the model's input order; absent: the numeric columns, in file order. */
  features?: readonly string[];
  /** Absent: from the extension (.csv; .jsonl or .ndjson). */
  format?: DatasetFormat;
  maxBytes: number;
}

export interface FeatureTable {
  featureNames: string[];
  /** Row-major, rows × featureNames.length. */
  features: Float32Array;
  rows: number;
  fingerprint: DatasetFingerprint;
}

/** Reads and checks the file at `filePath` (already resolved against the local policy). */
export async function loadFeatureTable(
  filePath: string,
  options: FeatureTableOptions,
): Promise<FeatureTable> {
  const { text, sha256 } = await readDatasetText(filePath, options.maxBytes);
  const builder = new FeatureBuilder(options.features);
  readRows(text, options.format ?? formatFromExtension(filePath), builder);
  return builder.finish(sha256);
}

class FeatureBuilder implements TableSink {
  private columns: readonly string[] = [];
  /** Null until known: chosen from the first data row when no features are named. */
  private featureIndex: number[] | null = null;
  private featureNames: string[] = [];
  private featureColumns: ColumnRef[] = [];
  private features = new Float32Array(1024);
  private rows = 0;

  constructor(private readonly named: readonly string[] | undefined) {}

  setColumns(columns: readonly string[], line: number): void {
    this.columns = columns;
    if (!this.named) return;
    this.featureNames = [...this.named];
    this.featureIndex = this.named.map((name) => {
      const at = columns.indexOf(name);
      if (at === -1) {
        throw missingColumn('feature', name, columns, line);
      }
      if (columns.indexOf(name, at + 1) !== -1) throw duplicateColumn(name, true, columns, line);
      return at;
    });
    this.featureColumns = this.named.map(namedColumn);
  }

  addRow(cell: (columnIndex: number) => unknown, line: number): void {
    const index = (this.featureIndex ??= this.numericColumns(cell, line));
    const width = index.length;
    if ((this.rows + 1) * width > this.features.length) {
      const grown = new Float32Array(Math.max((this.rows + 1) * width, this.features.length * 2));
      grown.set(this.features);
      this.features = grown;
    }
    const base = this.rows * width;
    for (let f = 0; f < width; f++) {
      this.features[base + f] = toNumber(cell(index[f]), this.featureColumns[f], line, 'features');
    }
    this.rows++;
  }

  finish(sha256: string): FeatureTable {
    if (this.rows === 0) throw new DatasetError('the dataset has a header but no data rows');
    return {
      featureNames: this.featureNames,
      features: this.features.slice(0, this.rows * this.featureNames.length),
      rows: this.rows,
      fingerprint: { sha256, rows: this.rows },
    };
  }

  private numericColumns(cell: (columnIndex: number) => unknown, line: number): number[] {
    const index = this.columns.flatMap((_, i) => (isNumericCell(cell(i)) ? [i] : []));
    if (index.length === 0) {
      throw new DatasetError(
        `no column of the first data row (line ${line}) holds a number; name the model's input columns ` +
          `with "features"`,
      );
    }
    if (index.length > TRAIN_LIMITS.maxFeatures) {
      throw new DatasetError(
        `the dataset has ${index.length} numeric columns; at most ${TRAIN_LIMITS.maxFeatures} are supported: ` +
          `choose them with "features"`,
      );
    }
    this.featureNames = index.map((i) => this.columns[i]);
    this.featureColumns = index.map((i) => fileColumn(this.columns[i], i));
    return index;
  }
}
