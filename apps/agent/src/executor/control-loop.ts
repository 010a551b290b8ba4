/**
 * Consumes the agent's control messages (cancel) continuously, until shutdown. Valid messages are
 * always acked after handling; invalid ones are terminated, counted and logged.
 */
import { JobCancel, decode } from '@hearth/contracts';
import type { Consumer, JsMsg } from '@nats-io/jetstream';
import { backoffDelay, sleep } from '../connection/backoff.js';
import { errorMessage, type Logger } from '../logger.js';
import type { AgentCounters } from '../telemetry/counters.js';
import type { AttemptRegistry } from './attempts.js';

export function handleControl(
  msg: JsMsg,
  registry: AttemptRegistry,
  counters: AgentCounters,
  logger: Logger,
): void {
  const parsed = decode(JobCancel, msg.data);
  if (!parsed.ok) {
    counters.invalidControl++;
    logger.warn(
      { reason: parsed.error, subject: msg.subject, streamSeq: msg.seq },
      'invalid control message terminated',
    );
    msg.term(); // no reason argument: nats-server < 2.10.4 ignores "+TERM <reason>" (the reason is logged)
    return;
  }
  const cancel = parsed.value;
  const log = logger.child({
    jobId: cancel.jobId,
    attemptId: cancel.attemptId,
    fencingToken: cancel.fencingToken,
  });
  const attempt = registry.get(cancel.attemptId);
  if (!attempt) {
    log.info('cancel for an attempt not held here; acknowledged');
  } else if (attempt.job.fencingToken !== cancel.fencingToken) {
    log.warn({ heldFencingToken: attempt.job.fencingToken }, 'cancel with another fencing token ignored');
  } else {
    log.info({ graceSeconds: cancel.graceSeconds }, 'cancelling attempt');
    attempt.cancel(cancel.graceSeconds, 'cancelled by the control plane');
  }
  msg.ack();
}

/**
 * How long each pull request for control messages stays open (the client's default is 30 s). A pull
 * request outlives the process that made it until it expires whenever something else subscribes to
 * a wildcard matching its inbox (a monitoring `nats sub '>'`), and nats-server hands a message to the
 * first open request: a cancel sent just after a restart would go to the old process's request and
 * wait out ack_wait (30 s) before the new process got it. As the job loop's pulls, 5 s.
 */
const CONTROL_PULL_EXPIRES_MS = 5000;

export async function runControlLoop(
  consumer: Pick<Consumer, 'consume'>,
  onMessage: (msg: JsMsg) => void,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  for (let failures = 0; !signal.aborted;) {
    try {
      const messages = await consumer.consume({ max_messages: 16, expires: CONTROL_PULL_EXPIRES_MS });
      const close = () => void messages.close();
      signal.addEventListener('abort', close, { once: true });
      try {
        for await (const msg of messages) {
          failures = 0;
          try {
            onMessage(msg);
          } catch (err) {
            logger.error({ err: errorMessage(err) }, 'control message handling failed');
          }
        }
      } finally {
        signal.removeEventListener('abort', close);
      }
      if (!signal.aborted) throw new Error('control consumer stopped delivering');
    } catch (err) {
      const delay = backoffDelay(failures++);
      logger.warn({ err: errorMessage(err), retryInMs: delay }, 'control consumer failed; retrying');
      await sleep(delay, signal);
    }
  }
}
