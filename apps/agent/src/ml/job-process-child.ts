/**
 * The child's half of a job run in a process of its own (executor/job-process.ts has the agent's):
 * takes one request on the IPC channel, runs `handler` with a way to send progress events up,
 * answers with the result or the error's parts, and ends. An error for the user (the job's input
 * is at fault) keeps its message, the job's reason, and what only the local log may hold.
 */
import type { LogLevel } from '../config/config.js';
import { USER_FACING } from '../executor/in-process-run.js';
import { createLogger, errorMessage, type Logger } from '../logger.js';

/** What every request carries besides the job's own fields. */
export interface JobProcessRequest {
  readonly attemptId: string;
  readonly logLevel: LogLevel;
}

export type JobProcessReply<Result> =
  | { readonly ok: true; readonly result: Result }
  | { readonly ok: false; readonly user: boolean; readonly message: string; readonly localDetail?: string };

export type JobProcessMessage<Result> =
  | { readonly type: 'progress'; readonly progress: unknown }
  | { readonly type: 'done'; readonly reply: JobProcessReply<Result> };

/** `name`: the process's, for its log lines (`component`) and its entry script (`<name>.js`). */
export function serveOneJob<Request extends JobProcessRequest, Result>(
  name: string,
  handler: (request: Request, progress: (event: unknown) => void, logger: Logger) => Promise<Result>,
): void {
  const send = process.send?.bind(process);
  if (!send) {
    process.stderr.write(`${name}.js is started by hearth-agent for one job, not run by hand\n`);
    process.exit(2);
  }
  // The agent gone (killed, crashed), nobody waits for the answer: stop (at the next await).
  process.once('disconnect', () => process.exit(1));
  process.once('message', (request: Request) => {
    const logger = createLogger(request.logLevel, { component: name, attemptId: request.attemptId });
    const progress = (event: unknown) => void send({ type: 'progress', progress: event });
    void answer(request, progress, logger, handler).then((reply) =>
      send({ type: 'done', reply } satisfies JobProcessMessage<Result>, () => process.exit(0)),
    );
  });
}

async function answer<Request extends JobProcessRequest, Result>(
  request: Request,
  progress: (event: unknown) => void,
  logger: Logger,
  handler: (request: Request, progress: (event: unknown) => void, logger: Logger) => Promise<Result>,
): Promise<JobProcessReply<Result>> {
  try {
    return { ok: true, result: await handler(request, progress, logger) };
  } catch (err) {
    if (USER_FACING.some((type) => err instanceof type)) {
      const localDetail = (err as { localDetail?: string }).localDetail;
      return { ok: false, user: true, message: errorMessage(err), ...(localDetail ? { localDetail } : {}) };
    }
    return {
      ok: false,
      user: false,
      message: err instanceof Error ? (err.stack ?? err.message) : String(err),
    };
  }
}

/** A signal that never aborts: the agent stops a job's process by killing it. */
export const NEVER: AbortSignal = new AbortController().signal;
