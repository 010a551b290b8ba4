/**
 * The entry of the process a `batch_predict` job runs in (executor/batch-predict-runner.ts starts
 * it). A model's work per run, and the memory it takes, are its author's to choose (a Loop of a
 * thousand MatMuls, a Range of a billion): in the agent's own process one such run held its event
 * loop, heartbeats and all, for as long as it took, and no cancel or timeout could stop it (ML-jobs
 * audit, findings 3 and 4). Here the agent stops it by killing the process.
 */
import type { BatchPredictResult, BatchPredictSpec } from '@hearth/contracts';
import type { LocalPolicy } from '../policy/local-policy.js';
import type { VerifiedModel } from '../serve/model-file.js';
import { batchPredict } from './batch-predict.js';
import { NEVER, serveOneJob, type JobProcessRequest } from './job-process-child.js';

export interface BatchPredictRequest extends JobProcessRequest {
  readonly spec: BatchPredictSpec;
  readonly policy: LocalPolicy;
  readonly jobId: string;
  readonly model: VerifiedModel;
  readonly inputPath: string;
  readonly batchRows?: number;
}

serveOneJob<BatchPredictRequest, BatchPredictResult>('batch-predict-process', (request, _progress, logger) =>
  batchPredict(request.spec, {
    policy: request.policy,
    jobId: request.jobId,
    attemptId: request.attemptId,
    model: request.model,
    inputPath: request.inputPath,
    signal: NEVER,
    logger,
    batchRows: request.batchRows,
  }),
);
