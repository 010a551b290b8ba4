/**
 * Starts a claimed train, batch_predict or serve attempt in the agent's process: its progress
 * events go up through the egress guard in order, cancel and kill reach it through the attempt,
 * and its result is waited for with every progress event sent before it.
 */
import type { Logger } from '../logger.js';
import type { Attempt } from './attempts.js';
import { runBatchPredict } from './batch-predict-runner.js';
import { startInProcess, type JobResult, type RunOutcome } from './in-process-run.js';
import type { JobRunnerDeps } from './job-runner.js';
import { ProgressSender } from './progress-sender.js';
import { runServe } from './serve-runner.js';
import { runTrain } from './train-runner.js';
import type { VerifiedJob } from './verify-job.js';

export type InProcessJob = Exclude<VerifiedJob, { kind: 'command' }>;

export async function runInProcessJob(
  attempt: Attempt,
  verified: InProcessJob,
  deps: JobRunnerDeps,
  log: Logger,
): Promise<JobResult> {
  const { jobId, attemptId, fencingToken, timeoutSeconds } = verified.job;
  const progress = new ProgressSender({
    logger: log,
    counters: deps.counters,
    signal: deps.forced,
    send: async (p, seq) => {
      await deps.guard.event({
        type: 'job.progress',
        v: 1,
        jobId,
        attemptId,
        fencingToken,
        seq,
        progress: p,
      });
    },
  });
  const run = startInProcess(
    // A deployment never ends by itself: a stopping agent ends it (a train job may finish meanwhile).
    { timeoutSeconds, stopWith: verified.kind === 'serve' ? deps.stopTaking : undefined, logger: log },
    (signal): Promise<RunOutcome> => {
      const ctx = { policy: deps.policy, signal, logger: log, progress };
      switch (verified.kind) {
        case 'train':
          return runTrain(verified.job, ctx);
        case 'batch_predict':
          return runBatchPredict(verified.job, verified, ctx);
        case 'serve':
          return runServe(verified.job, verified.model, {
            ...ctx,
            host: deps.serve,
            metricsIntervalMs: deps.serveMetricsIntervalMs,
          });
      }
    },
  );
  log.info({ kind: verified.kind, timeoutSeconds }, 'attempt started');
  attempt.attach(run);
  const result = await run.done;
  await progress.finish();
  return result;
}
