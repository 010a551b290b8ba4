/**
 * The `train` job from spec to result: check the spec against the local policy (the dataset must
 * be inside a data root, an artifact root must exist) before anything runs, load the dataset,
 * pick the backend, train, write the model to the artifact store as ONNX and as a TF.js layers
 * model, and return the metadata that may cross to the control plane. Nothing else leaves.
 *
 * Errors: PolicyError, DatasetError and TrainError carry a message for the user (the job's failure
 * reason); an abort rejects with signal.reason. Partial artifacts of a failed run are removed.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  TrainResult,
  TrainSpec,
  type TrainBackend,
  type TrainEpochMetrics,
  type TrainSpecInput,
} from '@hearth/contracts';
import { removeAttemptDir } from '../attempt-dir.js';
import type { Logger } from '../logger.js';
import { artifactPathFor, resolveDatasetUri, type LocalPolicy } from '../policy/local-policy.js';
import { AGENT_VERSION } from '../version.js';
import { denseSignature, describeArtifact } from './artifacts.js';
import { ensureBackend, selectBackend, type ModuleImporter } from './backend.js';
import { exportOnnx } from './onnx-export.js';
import { loadDatasetOffThread } from './table-loader.js';
import { directorySaver, MODEL_JSON, WEIGHTS_BIN } from './tfjs-save.js';
import { TrainError, trainModel } from './trainer.js';

export const ONNX_FILE = 'model.onnx';
export const TFJS_DIR = 'tfjs';

export interface TrainJobContext {
  policy: LocalPolicy;
  jobId: string;
  attemptId: string;
  /** Cancels the run between batches; train() then rejects with signal.reason. */
  signal: AbortSignal;
  logger: Logger;
  /** Once per epoch, awaited (e.g. to publish a job event). */
  onEpoch?: (metrics: TrainEpochMetrics) => void | Promise<void>;
  /** Once, when the backend is chosen and before training starts. */
  onBackend?: (backend: TrainBackend) => void | Promise<void>;
  /** Tests only: replaces how backend packages are imported (and skips the process-wide choice). */
  importBackend?: ModuleImporter;
}

export async function train(input: TrainSpecInput, ctx: TrainJobContext): Promise<TrainResult> {
  const spec = parseSpec(input);
  const { policy, logger: log } = ctx;
  ctx.signal.throwIfAborted();

  // Verify before run: both ends of the job must be allowed by the local policy.
  const dataset = resolveDatasetUri(spec.dataset.uri, policy);
  const onnxPath = artifactPathFor(policy, ctx.jobId, ctx.attemptId, ONNX_FILE);
  const attemptDir = path.dirname(onnxPath);
  try {
    const tfjsDir = artifactPathFor(policy, ctx.jobId, ctx.attemptId, TFJS_DIR);
    const data = await loadDatasetOffThread(
      dataset.path,
      {
        target: spec.target,
        features: spec.features,
        task: spec.task,
        format: spec.dataset.format,
        maxBytes: policy.maxDatasetBytes,
      },
      { signal: ctx.signal },
    );
    log.info(
      {
        rows: data.rows,
        features: data.featureNames.length,
        classes: data.labels?.length,
        sha256: data.fingerprint.sha256,
      },
      'dataset loaded',
    );

    const backend = await (ctx.importBackend ? selectBackend(ctx.importBackend) : ensureBackend());
    log.info({ backend: backend.name, skipped: backend.skipped }, 'training backend selected');
    await ctx.onBackend?.(backend.name);

    const trained = await trainModel(data, {
      task: spec.task,
      model: spec.model,
      epochs: spec.epochs,
      batchSize: spec.batchSize,
      learningRate: spec.learningRate,
      validationSplit: spec.validationSplit,
      seed: spec.seed,
      signal: ctx.signal,
      onEpoch: ctx.onEpoch,
    });
    try {
      const metadata = {
        task: spec.task,
        featureNames: data.featureNames,
        ...(data.labels ? { labels: data.labels } : {}),
        datasetSha256: data.fingerprint.sha256,
        datasetRows: data.fingerprint.rows,
      };
      const onnxBytes = exportOnnx(trained.network, {
        producerVersion: AGENT_VERSION,
        metadata: Object.fromEntries(
          Object.entries(metadata).map(([k, v]) => [
            `hearth.${k}`,
            typeof v === 'string' ? v : JSON.stringify(v),
          ]),
        ),
      });
      await fs.promises.writeFile(onnxPath, onnxBytes, { mode: 0o600 });
      trained.model.setUserDefinedMetadata({ hearth: metadata });
      await trained.model.save(directorySaver(tfjsDir));

      const outputs = trained.network.layers[trained.network.layers.length - 1].units;
      const signature = denseSignature(data.featureNames.length, outputs);
      const result: TrainResult = {
        backend: backend.name,
        datasetFingerprint: data.fingerprint,
        metrics: trained.metrics,
        artifacts: [
          await describeArtifact('onnx', onnxPath, signature),
          await describeArtifact('tfjs', path.join(tfjsDir, MODEL_JSON), signature, [
            path.join(tfjsDir, WEIGHTS_BIN),
          ]),
        ],
        featureNames: data.featureNames,
        ...(data.labels ? { labels: data.labels } : {}),
      };
      log.info(
        { metrics: trained.metrics, artifacts: result.artifacts.map((a) => a.uri) },
        'model trained and saved',
      );
      return TrainResult.parse(result);
    } finally {
      trained.model.dispose();
    }
  } catch (err) {
    await removeAttemptDir(attemptDir).catch(() => undefined);
    throw err;
  }
}

function parseSpec(input: TrainSpecInput): TrainSpec {
  const parsed = TrainSpec.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new TrainError(`invalid train job: ${issue.path.join('.') || '(spec)'}: ${issue.message}`);
  }
  return parsed.data;
}
