/**
 * The `train` job: ml/train-job's train() in a process of its own (ml/train-process.ts,
 * job-process.ts), so that its TF.js steps never hold the agent's event loop and a cancel or the
 * job's timeout stops it at once. Its backend and each epoch's metrics go up as JobProgress
 * (train.backend once, train.epoch per epoch), its TrainResult is the job's result.
 */
import path from 'node:path';
import type { JobDispatch, TrainResult } from '@hearth/contracts';
import { builtScript } from '../built-script.js';
import type { Logger } from '../logger.js';
import type { TrainProgress, TrainRequest } from '../ml/train-process.js';
import { ONNX_FILE } from '../ml/train-job.js';
import { artifactPathFor, type LocalPolicy } from '../policy/local-policy.js';
import type { RunOutcome } from './in-process-run.js';
import { logLevelOf, runJobProcess } from './job-process.js';
import type { ProgressSender } from './progress-sender.js';

export type TrainJob = Extract<JobDispatch, { kind: 'train' }>;

export interface TrainRunContext {
  policy: LocalPolicy;
  signal: AbortSignal;
  progress: ProgressSender;
  logger: Logger;
}

export async function runTrain(job: TrainJob, ctx: TrainRunContext): Promise<RunOutcome> {
  const request: TrainRequest = {
    spec: job.train,
    policy: ctx.policy,
    jobId: job.jobId,
    attemptId: job.attemptId,
    logLevel: logLevelOf(ctx.logger),
  };
  const result = await runJobProcess<TrainResult>(request, {
    script: builtScript(import.meta.url, '../ml/train-process.js'),
    what: 'train',
    signal: ctx.signal,
    logger: ctx.logger,
    attemptDir: path.dirname(artifactPathFor(ctx.policy, job.jobId, job.attemptId, ONNX_FILE)),
    onProgress: (progress) => ctx.progress.send(progress as TrainProgress),
  });
  return { result: { kind: 'train', train: result } };
}
