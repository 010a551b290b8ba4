/**
 * The `batch_predict` job: ml/batch-predict's batchPredict() on the model and input that passed
 * verification, in a process of its own (ml/batch-predict-process.ts), so that a model's runs
 * never hold the agent's event loop (its heartbeats, its other jobs, inference) and a cancel or the
 * job's timeout stops them at once: the process is killed, and its partial output removed. Its
 * result (counts, timing, hashes) is the job's result. No progress events.
 */
import { fork } from 'node:child_process';
import path from 'node:path';
import type { BatchPredictResult, JobDispatch } from '@hearth/contracts';
import { removeAttemptDir } from '../attempt-dir.js';
import { builtScript } from '../built-script.js';
import type { LogLevel } from '../config/config.js';
import type { Logger } from '../logger.js';
import type { BatchPredictReply, BatchPredictRequest } from '../ml/batch-predict-process.js';
import { PREDICTIONS_FILE } from '../ml/batch-predict.js';
import { artifactPathFor, type LocalPolicy } from '../policy/local-policy.js';
import type { VerifiedModel } from '../serve/model-file.js';
import { JobError, type RunOutcome } from './in-process-run.js';

export type BatchPredictJob = Extract<JobDispatch, { kind: 'batch_predict' }>;

export interface BatchPredictRunContext {
  policy: LocalPolicy;
  signal: AbortSignal;
  logger: Logger;
  /** Tests: the process's entry; default the build's ml/batch-predict-process.js. */
  processScript?: string;
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
    logLevel: ctx.logger.level as LogLevel,
    batchRows: ctx.batchRows,
  };
  const result = await inProcessOfItsOwn(request, ctx);
  return { result: { kind: 'batch_predict', batchPredict: result } };
}

function inProcessOfItsOwn(
  request: BatchPredictRequest,
  ctx: BatchPredictRunContext,
): Promise<BatchPredictResult> {
  const { signal, logger } = ctx;
  signal.throwIfAborted();
  const attemptDir = path.dirname(
    artifactPathFor(ctx.policy, request.jobId, request.attemptId, PREDICTIONS_FILE),
  );
  const child = fork(
    ctx.processScript ?? builtScript(import.meta.url, '../ml/batch-predict-process.js'),
    [],
    {
      // Typed arrays and the model's bytes cross as they are, not as JSON.
      serialization: 'advanced',
      execArgv: [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  return new Promise<BatchPredictResult>((resolve, reject) => {
    let settled = false;
    const settle = (finish: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      finish();
    };
    // Killed mid-write, the process leaves what it wrote: nothing of a stopped attempt is kept.
    const failWith = (err: unknown) =>
      settle(
        () =>
          void removeAttemptDir(attemptDir)
            .catch(() => undefined)
            .then(() => reject(err)),
      );
    const onAbort = () => {
      child.kill('SIGKILL');
      failWith(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    child.once('message', (reply: BatchPredictReply) => {
      if (reply.ok) return settle(() => resolve(reply.result));
      if (!reply.user) {
        return failWith(new Error(`the batch_predict process failed: ${reply.message}`));
      }
      // What may name the data or the model's own text stays in this machine's log.
      if (reply.localDetail) logger.warn({ detail: reply.localDetail }, reply.message);
      failWith(new JobError(reply.message));
    });
    child.once('error', (err) => failWith(err));
    child.once('exit', (code, killedBy) =>
      failWith(
        new JobError(
          `the batch_predict process ended without an answer (${killedBy ?? `exit code ${code}`}): ` +
            "the model's runs may need more memory than this machine has; the agent's log has its output",
        ),
      ),
    );
    child.send(request);
  });
}
