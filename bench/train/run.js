// bench/train: training throughput (rows/s) per TensorFlow.js backend, with the agent's own trainer.
//   npx tsc -b apps/agent && node bench/train/run.js [--rows 20000] [--features 16] [--epochs 5] [--batch-size 32]
// A generated binary-classification dataset (a seeded logistic ground truth over standard-normal
// features, labels drawn from it) is written as CSV and read with loadDataset, as a train job does.
// Each backend runs in its own process (tfjs-core selects one per process): the agent's
// selectBackend() with only that backend's package importable, so the code path is the job's. Each
// trains a logistic model and an MLP (hidden 64, 32) with the job's defaults (batch 32 unless
// --batch-size, Adam 0.01, validation split 0.2, seed 0). rows/s = training rows × epochs / seconds
// in trainModel (which includes each epoch's validation pass); loading the CSV is timed apart and
// excluded. tfjs-node-gpu and tfjs-node are tried too, and reported unavailable where not installed.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '20000' },
    features: { type: 'string', default: '16' },
    epochs: { type: 'string', default: '5' },
    'batch-size': { type: 'string', default: '32' },
    // Internal: run one backend in this process and print its result.
    backend: { type: 'string' },
    dataset: { type: 'string' },
  },
});
const rows = Number(values.rows);
const features = Number(values.features);
const epochs = Number(values.epochs);
const batchSize = Number(values['batch-size']);

const PACKAGES = {
  'tfjs-node-gpu': '@tensorflow/tfjs-node-gpu',
  'tfjs-node': '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};
const MODELS = [
  { name: 'logistic', spec: { type: 'logistic' } },
  { name: 'mlp 64-32', spec: { type: 'mlp', hiddenLayers: [64, 32] } },
];

if (values.backend) {
  console.log(JSON.stringify(await runBackend(values.backend, values.dataset)));
} else {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-train-'));
  try {
    const file = path.join(dir, 'train.csv');
    fs.writeFileSync(file, generateCsv(rows, features));
    const backends = Object.keys(PACKAGES).map((backend) => {
      const child = spawnSync(
        process.execPath,
        [
          fileURLToPath(import.meta.url),
          '--backend',
          backend,
          '--dataset',
          file,
          '--rows',
          String(rows),
          '--features',
          String(features),
          '--epochs',
          String(epochs),
          '--batch-size',
          String(batchSize),
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 },
      );
      if (child.status !== 0) throw new Error(`the ${backend} run failed (exit ${child.status})`);
      return JSON.parse(child.stdout.trim().split('\n').at(-1));
    });
    const result = {
      date: new Date().toISOString(),
      machine: `${os.cpus().length} cores (${os.cpus()[0].model}), ${Math.round(os.totalmem() / 2 ** 30)} GB; Node ${process.version}`,
      // The machine is shared: its 1-minute load average when the run ended.
      loadAverage: round(os.loadavg()[0]),
      dataset: { rows, features, task: 'binary', bytes: fs.statSync(file).size },
      epochs,
      batchSize,
      backends,
    };
    console.log(JSON.stringify(result, null, 2));
    fs.writeFileSync(
      `bench/train/results-${result.date.slice(0, 19).replace(/:/g, '')}.json`,
      JSON.stringify(result, null, 2),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** One backend, in this process: selected as a job would, only its own package importable. */
async function runBackend(backend, file) {
  const { selectBackend } = await import('../../apps/agent/dist/ml/backend.js');
  const { loadDataset } = await import('../../apps/agent/dist/ml/dataset.js');
  const { trainModel } = await import('../../apps/agent/dist/ml/trainer.js');
  const notInstalled = (specifier) =>
    Promise.reject(Object.assign(new Error(`${specifier} left out`), { code: 'ERR_MODULE_NOT_FOUND' }));
  let choice;
  try {
    choice = await selectBackend((specifier) =>
      specifier === PACKAGES[backend] ? import(specifier) : notInstalled(specifier),
    );
  } catch (err) {
    // Every candidate failed: the reason for this backend is in the message.
    const reason = String(err.message).match(new RegExp(`${backend}: ([^;]*)`))?.[1] ?? err.message;
    return { backend, available: false, reason };
  }
  if (choice.name !== backend) return { backend, available: false, reason: 'not selected' };

  let t = performance.now();
  const data = await loadDataset(file, { target: 'label', task: 'binary', maxBytes: 1 << 30 });
  const loadSeconds = (performance.now() - t) / 1000;
  const models = [];
  for (const { name, spec } of MODELS) {
    t = performance.now();
    const trained = await trainModel(data, {
      task: 'binary',
      model: spec,
      epochs,
      batchSize,
      learningRate: 0.01,
      validationSplit: 0.2,
      seed: 0,
    });
    const seconds = (performance.now() - t) / 1000;
    models.push({
      model: name,
      trainRows: trained.trainRows,
      seconds: Math.round(seconds * 100) / 100,
      rowsPerSecond: Math.round((trained.trainRows * epochs) / seconds),
      accuracy: Math.round(trained.metrics.accuracy * 1000) / 1000,
    });
    trained.model.dispose();
  }
  return { backend, available: true, tfBackend: choice.tfBackend, loadSeconds: round(loadSeconds), models };
}

/** Features ~ N(0, 1); label ~ Bernoulli(sigmoid(x·w + b)) with seeded w, b. */
function generateCsv(rowCount, width) {
  let state = 12345;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  const weights = Array.from({ length: width }, () => normal());
  const lines = [[...Array.from({ length: width }, (_, i) => `f${i}`), 'label'].join(',')];
  for (let r = 0; r < rowCount; r++) {
    const x = Array.from({ length: width }, () => normal());
    const logit = x.reduce((sum, v, i) => sum + v * weights[i], 0.5);
    const label = uniform() < 1 / (1 + Math.exp(-logit)) ? 'yes' : 'no';
    lines.push([...x.map((v) => v.toFixed(5)), label].join(','));
  }
  return lines.join('\n') + '\n';
}

function round(x) {
  return Math.round(x * 100) / 100;
}
