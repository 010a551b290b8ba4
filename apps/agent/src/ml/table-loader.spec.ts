/**
 * The worker thread that reads datasets (the build's table-worker.js, which the test command
 * builds before these run): same tables and errors as reading in the agent's own thread, an event
 * loop that goes on meanwhile, cancel, and a heap limit that fails the job instead of the agent.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatasetError, loadDataset, type DatasetOptions } from './dataset.js';
import { loadFeatureTable } from './feature-table.js';
import { defaultHeapLimitMb, loadDatasetOffThread, loadFeatureTableOffThread } from './table-loader.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-table-loader-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function write(name: string, content: string): string {
  const file = path.join(root, name);
  fs.writeFileSync(file, content);
  return file;
}

const classify: DatasetOptions = { target: 'label', task: 'multiclass', maxBytes: 64 << 20 };

/** About 16 MB of CSV: long enough to parse (hundreds of ms) that a held event loop shows. */
let big: string;
beforeAll(() => {
  const header = 'label,' + Array.from({ length: 16 }, (_, i) => `f${i}`).join(',') + '\n';
  const rows: string[] = [];
  for (let r = 0; r < 2_000; r++) {
    rows.push(
      `${['cat', 'dog', 'eel'][r % 3]},` +
        Array.from({ length: 16 }, (_, i) => (r * 0.37 + i).toFixed(3)).join(','),
    );
  }
  const block = rows.join('\n') + '\n';
  big = write('big.csv', header + block.repeat(Math.ceil(16e6 / block.length)));
});

/** Runs `load` while a 5 ms timer ticks; returns how long it took and the longest the timer waited. */
async function timed<T>(load: () => Promise<T>): Promise<{ value: T; ms: number; longestGapMs: number }> {
  const started = performance.now();
  let last = started;
  let longestGapMs = 0;
  const tick = () => {
    const now = performance.now();
    longestGapMs = Math.max(longestGapMs, now - last);
    last = now;
  };
  const timer = setInterval(tick, 5);
  try {
    const value = await load();
    tick(); // a load that held the loop to its end left no tick behind it
    return { value, ms: performance.now() - started, longestGapMs };
  } finally {
    clearInterval(timer);
  }
}

describe('loadDatasetOffThread', () => {
  it('reads the same dataset as loadDataset, arrays and all', async () => {
    const file = write('pets.csv', 'w,label,h\n1,"dog",2\n3,cat,4\n5,dog,"6"\n');
    const here = await loadDataset(file, classify);
    const there = await loadDatasetOffThread(file, classify);
    expect(there).toEqual(here);
    // Transferred, not copied (jest's realm has Float32Arrays of its own, hence by name).
    expect(there.features.constructor.name).toBe('Float32Array');
    expect(Array.from(there.targets)).toEqual([1, 0, 1]);
    expect(there.labels).toEqual(['cat', 'dog']);
  });

  it('keeps the event loop going while a large file is parsed', async () => {
    const { value, ms, longestGapMs } = await timed(() => loadDatasetOffThread(big, classify));
    expect(value.rows).toBeGreaterThan(50_000);
    expect(value.labels).toEqual(['cat', 'dog', 'eel']);
    // In the agent's own thread the parse holds the loop for nearly all of the load.
    expect(longestGapMs).toBeLessThan(ms / 2);
  });

  it('gives back the same errors, with what may only be logged locally kept apart', async () => {
    const headerless = write('headerless.csv', '1,2,3\n4,5,6\n');
    const err = await loadDatasetOffThread(headerless, classify).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as DatasetError).message).toBe(
      'the target column "label" is not in the dataset\'s header (line 1, 3 columns; the agent\'s log lists them). ' +
        'Does the file start with a header row?',
    );
    expect((err as DatasetError).localDetail).toBe('the header\'s columns are "1", "2", "3"');

    await expect(loadDatasetOffThread(path.join(root, 'absent.csv'), classify)).rejects.toThrow(
      new DatasetError('cannot open the dataset (ENOENT)'),
    );
  });

  it('stops reading when cancelled, with the cancel as the reason', async () => {
    const { ms: fullMs } = await timed(() => loadDatasetOffThread(big, classify));
    const controller = new AbortController();
    const reason = new Error('cancelled by a test');
    setTimeout(() => controller.abort(reason), 20);
    const started = performance.now();
    await expect(loadDatasetOffThread(big, classify, { signal: controller.signal })).rejects.toBe(reason);
    expect(performance.now() - started).toBeLessThan(fullMs);

    const already = new AbortController();
    already.abort(reason);
    await expect(loadDatasetOffThread(big, classify, { signal: already.signal })).rejects.toBe(reason);
  });

  it('fails the load, not the agent, when the file needs more memory than the limit', async () => {
    await expect(loadDatasetOffThread(big, classify, { heapLimitMb: 8 })).rejects.toThrow(
      new DatasetError(
        'reading the dataset needed more than the 8 MiB of memory this agent allows for a file of up to ' +
          `${64 << 20} bytes ("maxDatasetBytes" in the local policy); very long fields or lines cost the most`,
      ),
    );
    // The agent's thread is unharmed: the next load works.
    expect((await loadDatasetOffThread(big, classify)).labels).toEqual(['cat', 'dog', 'eel']);
  });

  it('refuses a record of a shape no table has at its first line, before it can outgrow the heap', async () => {
    // One line of 10 million fields (20 MB): a line of 80 million aborted the whole agent (V8 ends
    // the process, not the worker, when one array outgrows the worker's heap).
    const wide = path.join(root, 'wide.csv');
    fs.writeFileSync(wide, Buffer.alloc(20e6, '1,'));
    const started = performance.now();
    await expect(loadDatasetOffThread(wide, classify)).rejects.toThrow(
      new DatasetError('the CSV is malformed at line 1: a record has more than 4096 fields'),
    );
    expect(performance.now() - started).toBeLessThan(10_000);
    // A JSON document of one line, read as JSON Lines (a 200 MB one aborted the agent the same way).
    const document = write('export.json', `[${'{"a":1},'.repeat(300_000)}{"a":1}]\n`);
    await expect(loadDatasetOffThread(document, { ...classify, format: 'jsonl' })).rejects.toThrow(
      new DatasetError(
        'line 1 is longer than 1048576 characters (JSON Lines datasets hold one record per line)',
      ),
    );
  });

  it('leaves room for the text of a file at the size limit, twice over, and for the parse', () => {
    expect(defaultHeapLimitMb(256 * 2 ** 20)).toBe(768);
    expect(defaultHeapLimitMb(1)).toBe(257);
  });

  it("says so when the worker cannot start (an internal error, not the user's)", async () => {
    const err = await loadDatasetOffThread(big, classify, {
      workerScript: path.join(root, 'no-such-worker.js'),
    }).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(DatasetError);
    expect((err as Error).message).toMatch(/no-such-worker\.js/);
  });
});

describe('loadFeatureTableOffThread', () => {
  it('reads the same feature table as loadFeatureTable', async () => {
    const file = write('rows.jsonl', '{"id":"a","x":1,"y":2.5}\r\n\n{"id":"b","x":-1,"y":0}\n');
    const options = { maxBytes: 1 << 20 };
    const there = await loadFeatureTableOffThread(file, options);
    expect(there).toEqual(await loadFeatureTable(file, options));
    expect(there.featureNames).toEqual(['x', 'y']);
    expect(Array.from(there.features)).toEqual([1, 2.5, -1, 0]);
  });
});
