/**
 * The agent's half of a job run in a process of its own (ml/job-process-child.ts has the child's):
 * `train` and `batch_predict`, whose compute (TF.js steps, a model's runs) and memory are the job's
 * to choose. In the agent's process they held its event loop, heartbeats and all, and a cancel or
 * timeout could not stop them (ML-jobs audit, findings 3 and 4). Here the loop never waits on them,
 * and a cancel or the job's timeout kills the process at once; what it wrote for the attempt goes
 * with it. Progress events come up in order, before the result.
 */
import { fork } from 'node:child_process';
import type { LogLevel } from '../config/config.js';
import { removeAttemptDir } from '../attempt-dir.js';
import type { Logger } from '../logger.js';
import type { JobProcessMessage } from '../ml/job-process-child.js';
import { JobError } from './in-process-run.js';

export interface JobProcessOptions {
  /** The child's entry: a build's script that calls serveOneJob. */
  script: string;
  /** The job kind, for messages. */
  what: string;
  signal: AbortSignal;
  logger: Logger;
  /** The attempt's artifact directory: removed when the process is stopped or fails. */
  attemptDir: string;
  onProgress?: (progress: unknown) => void;
}

/** The level the job's process logs at: the agent's. */
export const logLevelOf = (logger: Logger) => logger.level as LogLevel;

export function runJobProcess<Result>(request: object, options: JobProcessOptions): Promise<Result> {
  const { signal, logger, what } = options;
  signal.throwIfAborted();
  const child = fork(options.script, [], {
    // Typed arrays and a model's bytes cross as they are, not as JSON.
    serialization: 'advanced',
    execArgv: [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise<Result>((resolve, reject) => {
    let settled = false;
    const settle = (finish: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      finish();
    };
    // A process stopped mid-write leaves what it wrote: nothing of a failed attempt is kept.
    const failWith = (err: unknown) =>
      settle(
        () =>
          void removeAttemptDir(options.attemptDir)
            .catch(() => undefined)
            .then(() => reject(err)),
      );
    const onAbort = () => {
      child.kill('SIGKILL');
      failWith(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    child.on('message', (message: JobProcessMessage<Result>) => {
      if (message.type === 'progress') {
        if (!settled) options.onProgress?.(message.progress);
        return;
      }
      const { reply } = message;
      if (reply.ok) return settle(() => resolve(reply.result));
      if (!reply.user) return failWith(new Error(`the ${what} process failed: ${reply.message}`));
      // What may name the data, or the model's own text, stays in this machine's log.
      if (reply.localDetail) logger.warn({ detail: reply.localDetail }, reply.message);
      failWith(new JobError(reply.message));
    });
    child.once('error', (err) => failWith(err));
    child.once('exit', (code, killedBy) =>
      failWith(
        new JobError(
          `the ${what} process ended without an answer (${killedBy ?? `exit code ${code}`}): it may have ` +
            "needed more memory than this machine has; the agent's log has its output",
        ),
      ),
    );
    child.send(request);
  });
}
