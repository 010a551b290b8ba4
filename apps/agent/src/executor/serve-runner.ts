/**
 * The `serve` job: deploy the (verified) model on the agent's inference server, report serve.ready
 * with the endpoint, then serve.metrics every interval until the job ends. It ends when stopped
 * (cancel: the model is unloaded once its requests in flight are done; CANCELLED) or when a newer
 * serve job deploys the same model name (SUCCEEDED, "replaced by version <v>"; the new version
 * stays). A last serve.metrics goes up as it ends. Only numbers leave: no request, no response.
 */
import type { JobDispatch } from '@hearth/contracts';
import { errorMessage, type Logger } from '../logger.js';
import type { VerifiedModel } from '../serve/model-file.js';
import type { Deployment, ServeHost } from '../serve/serve-host.js';
import { JobError, type RunOutcome } from './in-process-run.js';
import type { ProgressSender } from './progress-sender.js';

export type ServeJob = Extract<JobDispatch, { kind: 'serve' }>;

export const SERVE_METRICS_INTERVAL_MS = 10_000;

export interface ServeRunContext {
  host: ServeHost;
  signal: AbortSignal;
  progress: ProgressSender;
  logger: Logger;
  metricsIntervalMs?: number;
}

export async function runServe(
  job: ServeJob,
  model: VerifiedModel,
  ctx: ServeRunContext,
): Promise<RunOutcome> {
  const { name, version } = job.serve.model;
  const { host, signal, progress, logger } = ctx;
  let endpoint: string;
  try {
    endpoint = await host.start();
  } catch (err) {
    throw new JobError(errorMessage(err));
  }
  signal.throwIfAborted();
  const deployment = await host.deploy(job.attemptId, name, version, model.bytes);
  try {
    signal.throwIfAborted();
    const { executionProvider } = deployment;
    logger.info({ model: name, version, endpoint, executionProvider }, 'model deployed');
    progress.send({ kind: 'serve.ready', endpoint, executionProvider }, true);
    const by = await servedUntilReplaced(deployment, ctx);
    logger.info({ model: name, version, replacedBy: by }, 'deployment replaced');
    return { reason: `replaced by version ${by}` };
  } finally {
    await host.undeploy(deployment); // a no-op once replaced: the new version stays
    progress.send({ kind: 'serve.metrics', metrics: host.metricsOf(deployment) });
    host.forgetMetrics(deployment);
  }
}

/** Sends serve.metrics every interval; resolves with the replacing version, rejects when stopped. */
function servedUntilReplaced(deployment: Deployment, ctx: ServeRunContext): Promise<string> {
  const { host, signal, progress } = ctx;
  return new Promise<string>((resolve, reject) => {
    const timer = setInterval(
      () => progress.send({ kind: 'serve.metrics', metrics: host.metricsOf(deployment) }),
      ctx.metricsIntervalMs ?? SERVE_METRICS_INTERVAL_MS,
    );
    const onAbort = () => {
      clearInterval(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    void deployment.replaced.then((version) => {
      clearInterval(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(version);
    });
  });
}
