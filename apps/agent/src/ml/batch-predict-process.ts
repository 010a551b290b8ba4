/**
 * The entry of the process a `batch_predict` job runs in (executor/batch-predict-runner.ts starts
 * it with fork): takes one request on its IPC channel, runs batchPredict, answers with the result
 * or the error's parts, and ends. A model's work per run, and the memory it takes, are its author's
 * to choose (a Loop of a thousand MatMuls, a Range of a billion): in the agent's own process one
 * such run held its event loop, heartbeats and all, for as long as it took, and no cancel or
 * timeout could stop it (ML-jobs audit, findings 3 and 4). Here the agent stops it by killing the
 * process.
 */
import type { BatchPredictResult, BatchPredictSpec } from '@hearth/contracts';
import type { LogLevel } from '../config/config.js';
import { createLogger, errorMessage } from '../logger.js';
import { PolicyError, type LocalPolicy } from '../policy/local-policy.js';
import { ModelFileError, type VerifiedModel } from '../serve/model-file.js';
import { ServeError } from '../serve/serve.errors.js';
import { batchPredict } from './batch-predict.js';
import { DatasetError } from './dataset.js';

export interface BatchPredictRequest {
  readonly spec: BatchPredictSpec;
  readonly policy: LocalPolicy;
  readonly jobId: string;
  readonly attemptId: string;
  readonly model: VerifiedModel;
  readonly inputPath: string;
  readonly logLevel: LogLevel;
  readonly batchRows?: number;
}

/** `user`: the job's input is at fault, and the message says how (the job's reason). */
export type BatchPredictReply =
  | { readonly ok: true; readonly result: BatchPredictResult }
  | { readonly ok: false; readonly user: boolean; readonly message: string; readonly localDetail?: string };

const USER_FACING = [DatasetError, ServeError, ModelFileError, PolicyError];

async function answer(request: BatchPredictRequest): Promise<BatchPredictReply> {
  const logger = createLogger(request.logLevel, { component: 'batch-predict', attemptId: request.attemptId });
  try {
    const result = await batchPredict(request.spec, {
      policy: request.policy,
      jobId: request.jobId,
      attemptId: request.attemptId,
      model: request.model,
      inputPath: request.inputPath,
      // The agent stops this process instead.
      signal: new AbortController().signal,
      logger,
      batchRows: request.batchRows,
    });
    return { ok: true, result };
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

if (!process.send) {
  process.stderr.write(
    'batch-predict-process.js is started by hearth-agent for a batch_predict job, not run by hand\n',
  );
  process.exit(2);
}
// The agent gone (killed, crashed), nobody waits for the answer: stop at the next batch.
process.once('disconnect', () => process.exit(1));
process.once('message', (request: BatchPredictRequest) => {
  void answer(request).then((reply) => process.send!(reply, () => process.exit(0)));
});
