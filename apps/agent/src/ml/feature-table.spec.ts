import { afterAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatasetError } from './dataset.js';
import { loadFeatureTable } from './feature-table.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-feature-table-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, content);
  return p;
}

const load = (p: string, features?: string[]) => loadFeatureTable(p, { features, maxBytes: 1 << 20 });

describe('loadFeatureTable', () => {
  it('reads the named columns in the order named, with the file fingerprint', async () => {
    const content = 'id,b,a,note\n1,2,3,x\n4,5,6,y\n';
    const p = file('named.csv', content);
    const table = await load(p, ['a', 'b']);
    expect(table.featureNames).toEqual(['a', 'b']);
    expect(Array.from(table.features)).toEqual([3, 2, 6, 5]);
    expect(table.rows).toBe(2);
    expect(table.fingerprint).toEqual({
      sha256: createHash('sha256').update(content).digest('hex'),
      rows: 2,
    });
  });

  it('without names takes every column that holds a number in the first data row, in file order', async () => {
    const p = file('numeric.csv', 'a,label,b\n1,yes,2.5\n3,no,-4\n');
    const table = await load(p);
    expect(table.featureNames).toEqual(['a', 'b']);
    expect(Array.from(table.features)).toEqual([1, 2.5, 3, -4]);
  });

  it('reads JSON Lines the same way', async () => {
    const p = file('rows.jsonl', '{"a":1,"s":"x","b":2}\n{"a":3,"s":"y","b":4}\n');
    expect(Array.from((await load(p)).features)).toEqual([1, 2, 3, 4]);
    expect(Array.from((await load(p, ['b'])).features)).toEqual([2, 4]);
  });

  it('names the line and column of a bad value without quoting it', async () => {
    const p = file('later-text.csv', 'a,b\n1,2\n3,SECRET-CELL\n');
    const error = await load(p).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DatasetError);
    expect((error as Error).message).toBe(
      'line 3, column 2: the value is not a number (features must be numeric)',
    );
    expect((error as Error).message).not.toContain('SECRET');
  });

  it('refuses a missing column, ragged rows, an empty file and a header without rows', async () => {
    await expect(load(file('m.csv', 'a,b\n1,2\n'), ['a', 'c'])).rejects.toThrow(
      `the feature column "c" is not in the dataset's header (line 1, 2 columns; the agent's log lists them). Does the file start with a header row?`,
    );
    await expect(load(file('r.csv', 'a,b\n1,2\n3\n'))).rejects.toThrow(
      'line 3 has 1 fields but the header has 2 (ragged rows)',
    );
    await expect(load(file('e.csv', '\n'))).rejects.toThrow('the dataset file is empty');
    await expect(load(file('h.csv', 'a,b\n'))).rejects.toThrow('the dataset has a header but no data rows');
    await expect(load(file('t.csv', 'a,b\nx,y\n'))).rejects.toThrow(
      'no column of the first data row (line 2) holds a number; name the model\'s input columns with "features"',
    );
  });
});
