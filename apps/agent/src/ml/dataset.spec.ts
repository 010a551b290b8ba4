import { afterAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { DatasetError, loadDataset, type DatasetOptions } from './dataset.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-dataset-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

let n = 0;
function write(name: string, content: string | Buffer): string {
  const dir = path.join(root, String(n++));
  fs.mkdirSync(dir);
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return file;
}

const regression: DatasetOptions = { target: 'price', task: 'regression', maxBytes: 1 << 20 };

async function failure(file: string, options: Partial<DatasetOptions> = {}): Promise<string> {
  const err = await loadDataset(file, { ...regression, ...options }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DatasetError);
  return (err as DatasetError).message;
}

describe('loadDataset: CSV', () => {
  it('reads numeric features and the target by name, with the fingerprint of the bytes', async () => {
    const text = 'size,price,rooms\r\n50,100.5,2\r\n"75",2e2,3\r\n\r\n-1.5,.5,+4\r\n';
    const file = write('homes.csv', text);
    const data = await loadDataset(file, regression);
    expect(data.featureNames).toEqual(['size', 'rooms']);
    expect(Array.from(data.features)).toEqual([50, 2, 75, 3, -1.5, 4]);
    expect(Array.from(data.targets)).toEqual([100.5, 200, 0.5]);
    expect(data.labels).toBeNull();
    expect(data.rows).toBe(3);
    expect(data.fingerprint).toEqual({ sha256: createHash('sha256').update(text).digest('hex'), rows: 3 });
  });

  it('ignores a byte order mark and spaces around header names', async () => {
    const data = await loadDataset(write('bom.csv', '\uFEFFsize , price\n1,2\n'), regression);
    expect(data.featureNames).toEqual(['size']);
  });

  it('takes the feature columns asked for, in that order', async () => {
    const file = write('d.csv', 'a,b,c,price\n1,2,3,4\n');
    const data = await loadDataset(file, { ...regression, features: ['c', 'a'] });
    expect(data.featureNames).toEqual(['c', 'a']);
    expect(Array.from(data.features)).toEqual([3, 1]);
  });

  it('maps class labels to indices in a stable order and keeps the label list', async () => {
    const file = write('churn.csv', 'x,churn\n1,yes\n2,no\n3, yes \n');
    const data = await loadDataset(file, { target: 'churn', task: 'binary', maxBytes: 1000 });
    expect(data.labels).toEqual(['no', 'yes']);
    expect(Array.from(data.targets)).toEqual([1, 0, 1]);

    const numeric = write('n.csv', 'x,y\n1,10\n2,2\n3,0\n4,2\n');
    const classes = await loadDataset(numeric, { target: 'y', task: 'multiclass', maxBytes: 1000 });
    expect(classes.labels).toEqual(['0', '2', '10']);
    expect(Array.from(classes.targets)).toEqual([2, 1, 0, 1]);

    // A number written two ways in a CSV is one class, as it is in JSON Lines.
    const mixed = write('m.csv', 'x,y\n1,2\n2,2.0\n3,02\n4,-0\n5,0\n6,1e0\n7,1\n');
    const same = await loadDataset(mixed, { target: 'y', task: 'multiclass', maxBytes: 1000 });
    expect(same.labels).toEqual(['0', '1', '2']);
    expect(Array.from(same.targets)).toEqual([2, 2, 2, 0, 0, 1, 1]);
  });
});

describe('loadDataset: JSON Lines', () => {
  it('reads objects (numbers written as strings too), with booleans as binary labels', async () => {
    const file = write('d.jsonl', '{"a":1,"b":2.5,"ok":true}\n\n{"b":"3","a":-1,"ok":false}\n');
    const data = await loadDataset(file, { target: 'ok', task: 'binary', maxBytes: 1000 });
    expect(data.featureNames).toEqual(['a', 'b']);
    expect(Array.from(data.features)).toEqual([1, 2.5, -1, 3]);
    expect(data.labels).toEqual(['false', 'true']);
    expect(Array.from(data.targets)).toEqual([1, 0]);
    expect(data.rows).toBe(2);
  });

  it('takes the format from .ndjson, or from the option whatever the extension', async () => {
    const body = '{"x":1,"price":2}\n';
    expect((await loadDataset(write('d.ndjson', body), regression)).rows).toBe(1);
    expect((await loadDataset(write('d.txt', body), { ...regression, format: 'jsonl' })).rows).toBe(1);
    expect(await failure(write('d.txt', body))).toBe(
      'cannot tell the dataset\'s format from its extension ".txt": name it .csv or .jsonl, or set dataset.format',
    );
  });
});

describe('loadDataset: bad input gets a clear error', () => {
  it("a missing target column, with the header's size; its names stay on the agent", async () => {
    expect(await failure(write('d.csv', 'a,b\n1,2\n'))).toBe(
      `the target column "price" is not in the dataset's header (line 1, 2 columns; the agent's log lists them). Does the file start with a header row?`,
    );
    // A file without a header: its first row would be the "names", so they are never in the message.
    const headerless = write('h.csv', '35,alice@example.com,1\n41,bob@example.com,0\n');
    const err = await loadDataset(headerless, { target: 'price', task: 'regression', maxBytes: 1000 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as DatasetError).message).not.toContain('alice');
    expect((err as DatasetError).localDetail).toBe(`the header's columns are "35", "alice@example.com", "1"`);
    expect(await failure(write('d.jsonl', '{"a":1}\n'))).toMatch(
      /^the target column "price" is not in the dataset/,
    );
    expect(await failure(write('d.csv', 'a,price\n1,2\n'), { features: ['a', 'z'] })).toMatch(
      /^the feature column "z" is not in the dataset/,
    );
  });

  it('a non-numeric or missing value, by line and column, without quoting the value', async () => {
    // A feature the job did not name is given by its number: its name is the file's (local only).
    const message = await failure(write('d.csv', 'a,price\n1,2\nsecret-value,3\n'));
    expect(message).toBe('line 3, column 1: the value is not a number (features must be numeric)');
    expect(message).not.toContain('secret');
    // The target, and features the job names, by the job's names.
    expect(await failure(write('d.csv', 'a,price\n1,2\nx,3\n'), { features: ['a'] })).toBe(
      'line 3, column "a": the value is not a number (features must be numeric)',
    );
    expect(await failure(write('d.csv', 'a,price\n1,\n'))).toBe(
      'line 2, column "price": the value is missing',
    );
    expect(await failure(write('d.csv', 'a,price\n1,cheap\n'))).toBe(
      'line 2, column "price": the value is not a number (a regression target must be numeric)',
    );
    expect(await failure(write('d.jsonl', '{"a":1,"price":2}\n{"a":[1],"price":2}\n'))).toBe(
      'line 2, column 1: the value is not a number (features must be numeric)',
    );
    expect(await failure(write('d.jsonl', '{"a":"n/a","price":2}\n'))).toMatch(
      /^line 1, column 1: the value is not a number/,
    );
    expect(await failure(write('d.jsonl', '{"a":null,"price":2}\n'))).toBe(
      'line 1, column 1: the value is missing',
    );
    expect(await failure(write('d.csv', 'a,price\n0x1F,2\n'))).toMatch(/not a number/);
    expect(await failure(write('d.csv', 'a,price\n1e39,2\n'))).toBe(
      'line 2, column 1: the value is too large for a 32-bit float',
    );
  });

  it("a headerless file's first row stays on the agent: reasons number its columns", async () => {
    const file = write('people.csv', 'Jane Roe,4111111111111111,price\n1,2,3\nx,3,4\n');
    const err = (await loadDataset(file, regression).catch((e: unknown) => e)) as DatasetError;
    expect(err).toBeInstanceOf(DatasetError);
    expect(err.message).toBe('line 3, column 1: the value is not a number (features must be numeric)');
    expect(err.localDetail).toBe('column 1 is "Jane Roe"');
    const twice = (await loadDataset(write('twice.csv', 'yes,yes,price\n1,2,3\n'), regression).catch(
      (e: unknown) => e,
    )) as DatasetError;
    expect(twice).toMatchObject({
      message: 'columns 1 and 2 of the header have the same name (line 1)',
      localDetail: 'the name is "yes"',
    });
  });

  it('an empty file, or a header without rows', async () => {
    expect(await failure(write('d.csv', ''))).toBe('the dataset file is empty');
    expect(await failure(write('d.jsonl', '\n  \n'))).toBe('the dataset file is empty');
    expect(await failure(write('d.csv', 'a,price\n'))).toBe('the dataset has a header but no data rows');
  });

  it('ragged rows', async () => {
    expect(await failure(write('d.csv', 'a,b,price\n1,2,3\n4,5\n'))).toBe(
      'line 3 has 2 fields but the header has 3 (ragged rows)',
    );
    expect(await failure(write('d.csv', 'a,price\n1,2,3\n'))).toBe(
      'line 2 has 3 fields but the header has 2 (ragged rows)',
    );
    expect(await failure(write('d.jsonl', '{"a":1,"price":2}\n{"price":3}\n'))).toBe(
      'line 2 lacks the field "a" that the first line has (ragged rows)',
    );
    expect(await failure(write('d.jsonl', '{"a":1,"price":2}\n{"a":1,"price":3,"b":4}\n'))).toBe(
      'line 2 has 1 field(s) that the first line has not (ragged rows)',
    );
  });

  it('a dataset over the size limit, before reading it', async () => {
    expect(await failure(write('d.csv', 'a,price\n1,2\n'), { maxBytes: 10 })).toBe(
      'the dataset is 12 bytes, over this agent\'s limit of 10 bytes ("maxDatasetBytes" in the local policy)',
    );
  });

  it('the wrong number of classes for the task', async () => {
    const three = write('d.csv', 'a,y\n1,x\n2,y\n3,z\n');
    expect(await failure(three, { target: 'y', task: 'binary' })).toBe(
      'the target column "y" has 3 distinct value(s); a binary task needs exactly 2 (use the multiclass task)',
    );
    expect(await failure(write('d.csv', 'a,y\n1,x\n2,x\n'), { target: 'y', task: 'multiclass' })).toBe(
      'the target column "y" has 1 distinct value(s); a multiclass task needs at least 2',
    );
    const many = 'a,y\n' + Array.from({ length: 101 }, (_, i) => `${i},${i}`).join('\n');
    expect(await failure(write('d.csv', many), { target: 'y', task: 'multiclass' })).toMatch(
      /has more than 100 distinct values; is it a regression target\?$/,
    );
  });

  it('malformed CSV and JSON, and bytes that are not UTF-8', async () => {
    expect(await failure(write('d.csv', 'a,price\n"1,2\n'))).toBe(
      'the CSV is malformed at line 2: a quoted field is never closed',
    );
    expect(await failure(write('d.jsonl', '{"a":1,"price":2}\n{"a":\n'))).toBe('line 2 is not valid JSON');
    expect(await failure(write('d.jsonl', '[1,2]\n'))).toBe(
      'line 1 is not a JSON object (JSON Lines datasets hold one object per line)',
    );
    expect(await failure(write('d.csv', Buffer.from([0x61, 0x0a, 0xff, 0xfe, 0x0a])))).toBe(
      'the dataset is not UTF-8 text',
    );
  });

  it('a column named twice', async () => {
    expect(await failure(write('d.csv', 'a,a,price\n1,2,3\n'))).toBe(
      'columns 1 and 2 of the header have the same name (line 1)',
    );
    expect(await failure(write('d.csv', 'a,a,price\n1,2,3\n'), { features: ['a'] })).toBe(
      'the column "a" appears more than once in the header (line 1)',
    );
  });

  it('a symbolic link swapped in for the resolved file', async () => {
    const real = write('real.csv', 'a,price\n1,2\n');
    const link = path.join(path.dirname(real), 'link.csv');
    fs.symlinkSync(real, link);
    expect(await failure(link)).toBe('cannot open the dataset (ELOOP)');
  });

  it('a directory above the resolved file swapped for a link out of the data root, and a FIFO', async () => {
    const checked = write('train.csv', 'a,price\n1,2\n'); // <root>/<n>/train.csv, as the policy resolved it
    const dir = path.dirname(checked);
    const outside = path.join(root, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'train.csv'), 'secret,price\n1,2\n');
    fs.renameSync(dir, `${dir}-moved`);
    fs.symlinkSync(outside, dir);
    const changed =
      'the dataset changed between the check of the local policy and its reading (it is no longer that regular file)';
    expect(await failure(checked)).toBe(changed);

    fs.unlinkSync(dir);
    fs.mkdirSync(dir);
    execFileSync('mkfifo', [checked]);
    const started = performance.now();
    expect(await failure(checked)).toBe(changed); // at once: the open does not wait for a writer
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
