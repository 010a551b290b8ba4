/**
 * The `batch_predict` job: ml/batch-predict's batchPredict() on the model and input that passed
 * verification, in a process of its own (ml/batch-predict-process.ts, job-process.ts), so that a
 * model's runs never hold the agent's event loop and a cancel or the job's timeout stops them at
 * once. Its result (counts, timing, hashes) is the job's result. No progress events.
 */
import path from 'node:path';
import type { BatchPredictResult, JobDispatch } from '@hearth/contracts';
import { builtScript } from '../built-script.js';
import type { Logger } from '../logger.js';
import type { BatchPredictRequest } from '../ml/batch-predict-process.js';
import { PREDICTIONS_FILE } from '../ml/batch-predict.js';
import { artifactPathFor, type LocalPolicy } from '../policy/local-policy.js';
import type { VerifiedModel } from '../serve/model-file.js';
import type { RunOutcome } from './in-process-run.js';
import { logLevelOf, runJobProcess } from './job-process.js';

export type BatchPredictJob = Extract<JobDispatch, { kind: 'batch_predict' }>;

export interface BatchPredictRunContext {
  policy: LocalPolicy;
  signal: AbortSignal;
  logger: Logger;
  /** Tests: rows per model run. */
  batchRows?: number;
}

export async function runBatchPredict(
  job: BatchPredictJob,
  verified: { model: VerifiedModel; inputPath: string },
  ctx: BatchPredictRunContext,
): Promise<RunOutcome> {
  const request: BatchPredictRequest = {
    spec: job.batchPredict,
    policy: ctx.policy,
    jobId: job.jobId,
    attemptId: job.attemptId,
    model: verified.model,
    inputPath: verified.inputPath,
    logLevel: logLevelOf(ctx.logger),
    batchRows: ctx.batchRows,
  };
  const result = await runJobProcess<BatchPredictResult>(request, {
    script: builtScript(import.meta.url, '../ml/batch-predict-process.js'),
    what: 'batch_predict',
    signal: ctx.signal,
    logger: ctx.logger,
    attemptDir: path.dirname(artifactPathFor(ctx.policy, job.jobId, job.attemptId, PREDICTIONS_FILE)),
  });
  return { result: { kind: 'batch_predict', batchPredict: result } };
}
