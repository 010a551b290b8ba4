/**
 * Picks the TensorFlow.js backend for training, best first: @tensorflow/tfjs-node-gpu (CUDA), then
 * @tensorflow/tfjs-node (native CPU), then WebAssembly, then pure JavaScript. The first two are
 * optional packages a customer may install next to the agent; importing one registers the
 * "tensorflow" backend with tfjs-core, which we then select. Modules are loaded through an
 * importer that a test can replace to simulate the optional packages being present. The wasm
 * binaries are read from the package's own dist directory: nothing is fetched.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { TrainBackend } from '@hearth/contracts';

export type ModuleImporter = (specifier: string) => Promise<unknown>;

export interface BackendChoice {
  name: TrainBackend;
  /** The tfjs-core backend selected: tensorflow, wasm or cpu. */
  tfBackend: string;
  /** The better backends that could not be used, and why (for the job's log). */
  skipped: { name: TrainBackend; reason: string }[];
}

interface Candidate {
  name: TrainBackend;
  specifier: string;
  tfBackend: string;
  prepare?: (module: unknown) => void;
}

const WASM_PACKAGE = '@tensorflow/tfjs-backend-wasm';

const CANDIDATES: readonly Candidate[] = [
  { name: 'tfjs-node-gpu', specifier: '@tensorflow/tfjs-node-gpu', tfBackend: 'tensorflow' },
  { name: 'tfjs-node', specifier: '@tensorflow/tfjs-node', tfBackend: 'tensorflow' },
  { name: 'wasm', specifier: WASM_PACKAGE, tfBackend: 'wasm', prepare: prepareWasm },
  { name: 'cpu', specifier: '@tensorflow/tfjs-backend-cpu', tfBackend: 'cpu' },
];

// A variable specifier keeps TypeScript from resolving the optional packages at build time.
const nativeImport: ModuleImporter = (specifier) => import(specifier);

/**
 * Tries the candidates in order and selects the first that loads and initialises. Selection is
 * process-wide in tfjs-core; callers that train should use ensureBackend(), which selects once.
 */
export async function selectBackend(importer: ModuleImporter = nativeImport): Promise<BackendChoice> {
  tf.enableProdMode(); // no debug checks, and no "install tfjs-node" console banner from the cpu backend
  const skipped: BackendChoice['skipped'] = [];
  for (const candidate of CANDIDATES) {
    const reason = await tryCandidate(candidate, importer);
    if (reason === null) return { name: candidate.name, tfBackend: candidate.tfBackend, skipped };
    skipped.push({ name: candidate.name, reason });
  }
  throw new Error(
    `no TensorFlow.js backend could be initialised: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`,
  );
}

let selected: Promise<BackendChoice> | null = null;

/** Selects the backend on first use and returns the same choice afterwards. */
export function ensureBackend(importer: ModuleImporter = nativeImport): Promise<BackendChoice> {
  selected ??= selectBackend(importer).catch((err: unknown) => {
    selected = null;
    throw err;
  });
  return selected;
}

/** null when the candidate is now the active backend, else why not. */
async function tryCandidate(candidate: Candidate, importer: ModuleImporter): Promise<string | null> {
  let module: unknown;
  try {
    module = await importer(candidate.specifier);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') return 'not installed';
    return `failed to load: ${shortMessage(err)}`;
  }
  try {
    candidate.prepare?.(module);
    if (tf.findBackendFactory(candidate.tfBackend) === null) {
      return `loaded, but it did not register the "${candidate.tfBackend}" backend with this tfjs-core`;
    }
    if (!(await tf.setBackend(candidate.tfBackend))) return 'failed to initialise';
    await tf.ready();
    return null;
  } catch (err) {
    return `failed to initialise: ${shortMessage(err)}`;
  }
}

function prepareWasm(module: unknown): void {
  const setWasmPaths = (module as { setWasmPaths?: unknown }).setWasmPaths;
  if (typeof setWasmPaths !== 'function') throw new Error(`${WASM_PACKAGE} has no setWasmPaths`);
  const require = createRequire(import.meta.url);
  const dir = path.dirname(require.resolve(`${WASM_PACKAGE}/dist/tfjs-backend-wasm.wasm`));
  // One thread: training stays on the agent's own thread budget and its results are repeatable.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  (setWasmPaths as (prefix: string) => void)(`${dir}${path.sep}`);
}

function shortMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0].slice(0, 200);
}
