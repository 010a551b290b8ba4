/**
 * The `train` job: ml/train-job's train(), with its backend and each epoch's metrics sent up as
 * JobProgress (train.backend once, train.epoch per epoch) and its TrainResult as the job's result.
 */
import type { JobDispatch } from '@hearth/contracts';
import type { Logger } from '../logger.js';
import { train } from '../ml/train-job.js';
import type { LocalPolicy } from '../policy/local-policy.js';
import type { RunOutcome } from './in-process-run.js';
import type { ProgressSender } from './progress-sender.js';

export type TrainJob = Extract<JobDispatch, { kind: 'train' }>;

export interface TrainRunContext {
  policy: LocalPolicy;
  signal: AbortSignal;
  progress: ProgressSender;
  logger: Logger;
}

export async function runTrain(job: TrainJob, ctx: TrainRunContext): Promise<RunOutcome> {
  const { progress } = ctx;
  const result = await train(job.train, {
    policy: ctx.policy,
    jobId: job.jobId,
    attemptId: job.attemptId,
    signal: ctx.signal,
    logger: ctx.logger,
    onBackend: (backend) => progress.send({ kind: 'train.backend', backend }),
    onEpoch: (metrics) => progress.send({ kind: 'train.epoch', metrics }),
  });
  return { result: { kind: 'train', train: result } };
}
