/**
 * The `batch_predict` job: ml/batch-predict's batchPredict() on the model and input that passed
 * verification; its result (counts, timing, hashes) is the job's result. No progress events.
 */
import type { JobDispatch } from '@hearth/contracts';
import type { Logger } from '../logger.js';
import { batchPredict } from '../ml/batch-predict.js';
import type { LocalPolicy } from '../policy/local-policy.js';
import type { VerifiedModel } from '../serve/model-file.js';
import type { RunOutcome } from './in-process-run.js';

export type BatchPredictJob = Extract<JobDispatch, { kind: 'batch_predict' }>;

export interface BatchPredictRunContext {
  policy: LocalPolicy;
  signal: AbortSignal;
  logger: Logger;
}

export async function runBatchPredict(
  job: BatchPredictJob,
  verified: { model: VerifiedModel; inputPath: string },
  ctx: BatchPredictRunContext,
): Promise<RunOutcome> {
  const result = await batchPredict(job.batchPredict, {
    policy: ctx.policy,
    jobId: job.jobId,
    attemptId: job.attemptId,
    model: verified.model,
    inputPath: verified.inputPath,
    signal: ctx.signal,
    logger: ctx.logger,
  });
  return { result: { kind: 'batch_predict', batchPredict: result } };
}
