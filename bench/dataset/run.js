// bench/dataset: how long a train job's dataset takes to read, and how long the agent's event loop
// (its heartbeat, which keeps its leases, and its inference server) is held meanwhile.
//   npm run build && node bench/dataset/run.js [--mib 100] [--features 20]
// Writes a CSV of about --mib MiB (a 0/1 label and --features numeric columns, 4 decimals), and a
// second file of the same size that is one quoted field of doubled quotes (the parser's worst
// case), then reads each in a fresh process: with loadDataset in the agent's thread (as before) and
// with loadDatasetOffThread (a worker thread, as a train job does now). Reports seconds, MiB/s, the
// longest wait of a 10 ms timer during the read, and the process's peak RSS.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '100' },
    features: { type: 'string', default: '20' },
    // Internal: read one file one way in this process and print the result.
    file: { type: 'string' },
    mode: { type: 'string' },
  },
});
const agentDist = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'apps',
  'agent',
  'dist',
);
const MAX_BYTES = 2 ** 29 - 24;
const options = { target: 'y', task: 'binary', maxBytes: MAX_BYTES };

if (values.file) {
  console.log(JSON.stringify(await readOnce(values.file, values.mode)));
} else {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-dataset-'));
  try {
    const bytes = Number(values.mib) * 2 ** 20;
    const files = {
      numeric: writeNumeric(path.join(dir, 'numeric.csv'), bytes, Number(values.features)),
      'quoted field': writeQuoted(path.join(dir, 'quoted.csv'), bytes),
    };
    const results = [];
    for (const [shape, file] of Object.entries(files)) {
      for (const mode of ['inline', 'worker']) {
        const child = spawnSync(
          process.execPath,
          [fileURLToPath(import.meta.url), '--file', file, '--mode', mode],
          {
            encoding: 'utf8',
            maxBuffer: 1 << 20,
          },
        );
        if (child.status !== 0) throw new Error(`${shape} ${mode}: ${child.stderr}`);
        const result = {
          shape,
          mode,
          mib: +(fs.statSync(file).size / 2 ** 20).toFixed(1),
          ...JSON.parse(child.stdout),
        };
        console.log(JSON.stringify(result));
        results.push(result);
      }
    }
    const out = path.join(path.dirname(fileURLToPath(import.meta.url)), `results-${Date.now()}.json`);
    fs.writeFileSync(
      out,
      JSON.stringify({ at: new Date().toISOString(), cores: os.cpus().length, results }, null, 2),
    );
    console.log(`written ${path.relative(process.cwd(), out)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function readOnce(file, mode) {
  const { loadDataset } = await import(path.join(agentDist, 'ml', 'dataset.js'));
  const { loadDatasetOffThread } = await import(path.join(agentDist, 'ml', 'table-loader.js'));
  const started = performance.now();
  let last = started;
  let longestGapMs = 0;
  const tick = () => {
    const now = performance.now();
    longestGapMs = Math.max(longestGapMs, now - last);
    last = now;
  };
  const timer = setInterval(tick, 10);
  let outcome;
  try {
    const data = await (mode === 'inline' ? loadDataset(file, options) : loadDatasetOffThread(file, options));
    outcome = { rows: data.rows };
  } catch (err) {
    outcome = { error: err.message.slice(0, 80) };
  }
  tick();
  clearInterval(timer);
  const seconds = (performance.now() - started) / 1000;
  return {
    ...outcome,
    seconds: +seconds.toFixed(2),
    mibPerSecond: +(fs.statSync(file).size / 2 ** 20 / seconds).toFixed(1),
    longestLoopWaitMs: Math.round(longestGapMs),
    peakRssMib: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

function writeNumeric(file, bytes, features) {
  const rows = [];
  for (let r = 0; r < 10_000; r++) {
    const cells = [String(r % 2)];
    for (let f = 0; f < features; f++) cells.push((Math.sin(r * 7 + f) * 100).toFixed(4));
    rows.push(cells.join(','));
  }
  const block = rows.join('\n') + '\n';
  const header = ['y', ...Array.from({ length: features }, (_, f) => `f${f}`)].join(',') + '\n';
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, header);
  for (let written = header.length; written < bytes; written += block.length) fs.writeSync(fd, block);
  fs.closeSync(fd);
  return file;
}

/** A header, then one row whose feature is a quoted field of doubled quotes filling the file. */
function writeQuoted(file, bytes) {
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, 'y,a\n0,"');
  const block = '""'.repeat(1 << 20);
  for (let written = 7; written < bytes; written += block.length) fs.writeSync(fd, block);
  fs.writeSync(fd, '"\n1,2\n');
  fs.closeSync(fd);
  return file;
}
