/**
 * The entry of the process a `train` job runs in (executor/train-runner.ts starts it). One
 * TF.js step of a spec within the contract's limits (a 65,536-row batch through 1,024-wide layers)
 * held the agent's event loop for 20 s in its own process, past the 8 s lease, and a cancel waited
 * for the step to end (ML-jobs audit, finding 3). Here the agent stops it by killing the process;
 * the backend and each epoch's metrics come up as progress events.
 */
import type { TrainEpochMetrics, TrainBackend, TrainResult, TrainSpecInput } from '@hearth/contracts';
import type { LocalPolicy } from '../policy/local-policy.js';
import { NEVER, serveOneJob, type JobProcessRequest } from './job-process-child.js';
import { train } from './train-job.js';

export interface TrainRequest extends JobProcessRequest {
  readonly spec: TrainSpecInput;
  readonly policy: LocalPolicy;
  readonly jobId: string;
}

/** What the process sends up while it trains: the job's own JobProgress events. */
export type TrainProgress =
  | { readonly kind: 'train.backend'; readonly backend: TrainBackend }
  | { readonly kind: 'train.epoch'; readonly metrics: TrainEpochMetrics };

serveOneJob<TrainRequest, TrainResult>('train-process', (request, progress, logger) =>
  train(request.spec, {
    policy: request.policy,
    jobId: request.jobId,
    attemptId: request.attemptId,
    signal: NEVER,
    logger,
    onBackend: (backend) => progress({ kind: 'train.backend', backend } satisfies TrainProgress),
    onEpoch: (metrics) => progress({ kind: 'train.epoch', metrics } satisfies TrainProgress),
  }),
);
