/**
 * Runs a job kind that lives in the agent's own process (train, batch_predict, serve) the way a
 * command runs: with a timeout (none when null), cancel and kill, and a result that never throws.
 * Stopping aborts the body's AbortSignal with a JobStop as its reason; the body rejects with it
 * (train() checks between batches) or returns. Errors whose message is written for the user
 * become the FAILED reason as is; anything else is logged with an id, and only the id goes up.
 */
import { randomUUID } from 'node:crypto';
import type { JobFinished } from '@hearth/contracts';
import { errorMessage, type Logger } from '../logger.js';
import { DatasetError } from '../ml/dataset.js';
import { TrainError } from '../ml/trainer.js';
import { PolicyError } from '../policy/local-policy.js';
import { ModelFileError } from '../serve/model-file.js';
import { ServeError } from '../serve/serve.errors.js';
import type { RunControl } from './attempts.js';
import type { AttemptOutcome, CommandResult } from './command-runner.js';

export type JobResultPayload = NonNullable<JobFinished['result']>;

/** What a job reports: a command's result, with what a train or batch_predict job produced. */
export interface JobResult extends CommandResult {
  result?: JobResultPayload;
}

/** A body that returns has SUCCEEDED: with an explanation (e.g. a replaced deployment) and a result. */
export interface RunOutcome {
  reason?: string;
  result?: JobResultPayload;
}

/** Why a run was stopped: the abort reason of its signal. */
export class JobStop {
  constructor(
    readonly outcome: Extract<AttemptOutcome, 'CANCELLED' | 'TIMED_OUT' | 'RELEASED'>,
    readonly reason: string,
  ) {}
}

/** A failure whose message is written for the user (the job's FAILED reason, shown as is). */
export class JobError extends Error {
  override readonly name = 'JobError';
}

/** Errors whose message is for the user (the job's input is at fault): the job's reason. */
export const USER_FACING = [JobError, PolicyError, DatasetError, TrainError, ModelFileError, ServeError];

export interface InProcessOptions {
  timeoutSeconds: number | null;
  /**
   * When this aborts (the agent begins to stop), the run is given back at once: RELEASED "agent
   * stopping" (serve: a deployment never ends by itself, so it does not wait for the drain).
   */
  stopWith?: AbortSignal;
  logger: Logger;
}

export interface InProcessRun extends RunControl {
  readonly done: Promise<JobResult>;
}

export function startInProcess(
  options: InProcessOptions,
  body: (signal: AbortSignal) => Promise<RunOutcome>,
): InProcessRun {
  const controller = new AbortController();
  const stop = (outcome: JobStop['outcome'], reason: string) => {
    if (!controller.signal.aborted) controller.abort(new JobStop(outcome, reason));
  };
  const { timeoutSeconds, stopWith } = options;
  const timer =
    timeoutSeconds === null
      ? undefined
      : setTimeout(() => stop('TIMED_OUT', `timed out after ${timeoutSeconds}s`), timeoutSeconds * 1000);
  const onStop = () => stop('RELEASED', 'agent stopping');
  if (stopWith?.aborted) onStop();
  else stopWith?.addEventListener('abort', onStop, { once: true });

  const done = (async (): Promise<JobResult> => {
    try {
      controller.signal.throwIfAborted(); // stopped before it started: the body never runs
      const outcome = await body(controller.signal);
      return {
        outcome: 'SUCCEEDED',
        exitCode: null,
        signal: null,
        reason: outcome.reason ?? null,
        ...(outcome.result ? { result: outcome.result } : {}),
      };
    } catch (err) {
      return failure(err, controller.signal, options.logger);
    } finally {
      clearTimeout(timer);
      stopWith?.removeEventListener('abort', onStop);
    }
  })();

  return {
    done,
    cancel: (_graceSeconds, reason = 'cancelled') => stop('CANCELLED', reason),
    kill: (reason) => stop('RELEASED', reason),
  };
}

function failure(err: unknown, signal: AbortSignal, logger: Logger): JobResult {
  const base = { exitCode: null, signal: null };
  // Stopped: whatever the body threw on its way out, the stop is what happened.
  const stopped = err instanceof JobStop ? err : signal.reason instanceof JobStop ? signal.reason : null;
  if (stopped) return { ...base, outcome: stopped.outcome, reason: stopped.reason };
  if (USER_FACING.some((type) => err instanceof type)) {
    // What may name the data (a headerless file's first row) is logged here, on the agent only.
    if ((err instanceof DatasetError || err instanceof ServeError) && err.localDetail) {
      logger.warn({ detail: err.localDetail }, err.message);
    }
    return { ...base, outcome: 'FAILED', reason: errorMessage(err) };
  }
  const id = randomUUID();
  logger.error(
    { errorId: id, err: err instanceof Error ? (err.stack ?? err.message) : String(err) },
    'job failed with an unexpected error',
  );
  return {
    ...base,
    outcome: 'FAILED',
    reason: `internal error on the agent (id ${id}); its log has the details`,
  };
}
