/**
 * One dispatched attempt, from message to ack: validate, verify against the local policy (a job it
 * refuses is reported FAILED, never claimed), claim (the control plane must agree before anything
 * starts), run, ship the log tail, report JobFinished until the stream acks it,
 * and only then ack the dispatch message. The message is kept alive with working() throughout.
 * An attempt the agent's own stop ended (a deployment, or a job the drain timeout killed) is
 * reported as JobReleased instead: given back, for the control plane to run again.
 */
import path from 'node:path';
import { JobDispatch, clipText, decode, type JobFinished, type JobReleased } from '@hearth/contracts';
import type { JsMsg } from '@nats-io/jetstream';
import { removeAttemptDir } from '../attempt-dir.js';
import type { JobBaseEnv } from '../config/config.js';
import { backoffDelay, sleep } from '../connection/backoff.js';
import { EgressRefusedError, StreamFullError, type EgressGuard } from '../egress/guard.js';
import { errorMessage, type Logger } from '../logger.js';
import type { LocalPolicy } from '../policy/local-policy.js';
import type { ServeHost } from '../serve/serve-host.js';
import type { AgentCounters } from '../telemetry/counters.js';
import type { GpuAllocator } from '../telemetry/gpu-allocator.js';
import type { Attempt, AttemptRegistry } from './attempts.js';
import { MAX_LOG_FILE_BYTES, startCommand, type CommandResult } from './command-runner.js';
import { leaseGpus } from './gpu-lease.js';
import type { JobResult } from './in-process-run.js';
import { LogShipper } from './log-shipper.js';
import type { LineGate } from './line-splitter.js';
import { LogTail } from './log-tail.js';
import { sandboxArgs, sandboxSharesHostDevices, signalOfSandboxExit } from './sandbox.js';
import { GpuDeviceError, gpuDeviceFiles, type DeviceRoots, type GpuDeviceFiles } from './gpu-devices.js';
import { verifyJob, type VerifiedJob } from './verify-job.js';

export interface JobRunnerDeps {
  dataDir: string;
  jobBaseEnv: JobBaseEnv;
  guard: Pick<EgressGuard, 'claim' | 'event'>;
  registry: AttemptRegistry;
  counters: AgentCounters;
  logger: Logger;
  /** Graceful stop: claims that have not succeeded yet give the message back. */
  stopTaking: AbortSignal;
  /** Forced stop: reporting gives up (the message is then redelivered). */
  forced: AbortSignal;
  workingIntervalMs?: number;
  /** Assigns jobs their GPUs; without it a job that asks for GPUs is refused. */
  gpus?: GpuAllocator;
  /** The customer's local policy: every job is checked against it before it is claimed. */
  policy: LocalPolicy;
  /** The inference server that `serve` jobs deploy to. */
  serve: ServeHost;
  /** bubblewrap's path when the policy runs command jobs in a sandbox (prepareSandbox); else null. */
  sandboxTool?: string | null;
  /** Tests only: where the GPU driver's files are (default the host's /proc, /sys and /dev). */
  deviceRoots?: DeviceRoots;
  /** Tests only: how often a deployment reports serve.metrics (default 10 s). */
  serveMetricsIntervalMs?: number;
}

const FINISH_BACKOFF = { initialMs: 500, maxMs: 30_000 };

export async function handleDispatch(
  msg: JsMsg,
  deps: JobRunnerDeps,
  releaseSlot: () => void = () => {},
): Promise<void> {
  const parsed = decode(JobDispatch, msg.data);
  if (!parsed.ok) {
    deps.counters.invalidDispatch++;
    deps.logger.warn(
      {
        reason: parsed.error,
        subject: msg.subject,
        streamSeq: msg.seq,
        invalid: deps.counters.invalidDispatch,
      },
      'invalid job dispatch message terminated',
    );
    msg.term(); // no reason argument: nats-server < 2.10.4 ignores "+TERM <reason>" (the reason is logged)
    return;
  }
  const job = parsed.value;
  // A deployment serves until it is stopped: it takes no job slot (heartbeats report it as running,
  // so the control plane's count of the agent's capacity stays right).
  if (job.kind === 'serve') releaseSlot();
  const existing = deps.registry.get(job.attemptId);
  if (existing) {
    deps.logger.info({ attemptId: job.attemptId }, 'redelivery of an attempt already held here');
    existing.adopt(msg);
    return;
  }
  const attempt = deps.registry.add(job, msg);
  const log = deps.logger.child({
    jobId: job.jobId,
    attemptId: job.attemptId,
    fencingToken: job.fencingToken,
  });
  const working = setInterval(() => attempt.msg.working(), deps.workingIntervalMs ?? 10_000);
  try {
    await runAttempt(attempt, deps, log);
  } catch (err) {
    log.error({ err: errorMessage(err) }, 'attempt handling failed; the message will be redelivered');
  } finally {
    clearInterval(working);
    deps.registry.remove(attempt);
  }
}

async function runAttempt(attempt: Attempt, deps: JobRunnerDeps, log: Logger): Promise<void> {
  // Verify before run: a job the local policy refuses is never claimed, and reported FAILED.
  const verdict = await verifyJob(attempt.job, deps.policy, deps.jobBaseEnv.PATH);
  if (!verdict.ok) {
    deps.counters.jobsRefused++;
    log.warn({ kind: attempt.job.kind, reason: verdict.reason }, 'job refused by the local policy');
    attempt.state = 'reporting';
    const refused: JobResult = { outcome: 'FAILED', exitCode: null, signal: null, reason: verdict.reason };
    deps.counters.jobFinished(attempt.job.kind, refused.outcome);
    if (await reportFinished(attempt, refused, deps, log)) await ackDispatch(attempt, log);
    return;
  }
  const claim = await claimAttempt(attempt, deps, log);
  if (claim === 'stopped') {
    attempt.msg.nak();
    return;
  }
  if (!claim.ok) {
    deps.counters.claimsRefused++;
    log.info({ reason: claim.reason }, 'claim refused; the attempt will not run');
    attempt.msg.term();
    return;
  }
  attempt.state = 'running';
  const stop = attempt.stopRequested;
  const lease = stop
    ? null
    : leaseGpus(deps.gpus, attempt.job, { isolated: gpusIsolated(attempt.job, deps) });
  if (lease?.ok) {
    attempt.gpuEnv = lease.env;
    attempt.gpus = lease.gpus;
  } else if (lease)
    log.warn({ reason: lease.reason, gpus: attempt.job.gpus }, 'GPUs not assigned; job fails');
  const result: JobResult = stop
    ? { outcome: stop.outcome, exitCode: null, signal: null, reason: `${stop.reason} before start` }
    : !lease!.ok
      ? { outcome: 'FAILED', exitCode: null, signal: null, reason: lease!.reason }
      : await start(attempt, verdict.verified, deps, log).finally(lease!.release);
  attempt.state = 'reporting';
  deps.counters.jobFinished(attempt.job.kind, result.outcome);
  log.info({ outcome: result.outcome, exitCode: result.exitCode, signal: result.signal }, 'attempt finished');
  if (await reportFinished(attempt, result, deps, log)) await ackDispatch(attempt, log);
}

/**
 * Acks the dispatch and waits for the server to confirm. A lost ack is not fatal: the message is
 * redelivered after ack_wait and the control plane refuses the claim of a finished attempt.
 */
async function ackDispatch(attempt: Attempt, log: Logger): Promise<void> {
  let confirmed = false;
  try {
    confirmed = await attempt.msg.ackAck({ timeout: 5000 });
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'dispatch ack not confirmed');
  }
  if (!confirmed) log.warn('dispatch ack not confirmed; a redelivery will be refused at claim');
}

type ClaimOutcome = { ok: true } | { ok: false; reason: string } | 'stopped';

async function claimAttempt(attempt: Attempt, deps: JobRunnerDeps, log: Logger): Promise<ClaimOutcome> {
  const { jobId, attemptId, fencingToken } = attempt.job;
  for (let i = 0; ; i++) {
    if (deps.stopTaking.aborted) return 'stopped';
    try {
      const reply = await deps.guard.claim({ type: 'job.claim', v: 1, jobId, attemptId, fencingToken });
      return reply.ok ? { ok: true } : { ok: false, reason: reply.reason ?? 'no reason given' };
    } catch (err) {
      deps.counters.claimFailures++;
      const delay = backoffDelay(i);
      log.warn({ err: errorMessage(err), try: i + 1, retryInMs: delay }, 'claim not answered; retrying');
      attempt.msg.working();
      if (!(await sleep(delay, deps.stopTaking))) return 'stopped';
    }
  }
}

/**
 * The ML runners (TensorFlow.js, ONNX Runtime) load with the first job that needs them: an agent
 * that only runs commands stays small, and every fork for a command copies the agent's page tables
 * (measured: spawn costs 1.0 ms of CPU at 57 MB RSS, 1.4 ms at 96 MB).
 */
async function runInProcess(
  attempt: Attempt,
  verified: Parameters<typeof import('./in-process-job.js').runInProcessJob>[1],
  deps: JobRunnerDeps,
  log: Logger,
): Promise<JobResult> {
  const { runInProcessJob } = await import('./in-process-job.js');
  return runInProcessJob(attempt, verified, deps, log);
}

function start(
  attempt: Attempt,
  verified: VerifiedJob,
  deps: JobRunnerDeps,
  log: Logger,
): Promise<JobResult> {
  return verified.kind === 'command'
    ? execute(attempt, verified.job, verified.executable, deps, log)
    : runInProcess(attempt, verified, deps, log);
}

/** A sandboxed command job sees only its own GPUs' device files, unless the policy shares the host's /dev. */
function gpusIsolated(job: JobDispatch, deps: JobRunnerDeps): boolean {
  return (
    job.kind === 'command' && (deps.sandboxTool ?? null) !== null && !sandboxSharesHostDevices(deps.policy)
  );
}

/** The output's lines are not wanted at all (the policy keeps them on the machine). */
const NO_LINES: LineGate = { wanted: () => false, skipped: () => undefined, keepLast: 0 };

/** `executable`: the job's program as verify-job found it (command[0] was the name the job gave). */
async function execute(
  attempt: Attempt,
  job: Extract<JobDispatch, { kind: 'command' }>,
  executable: string,
  deps: JobRunnerDeps,
  log: Logger,
): Promise<CommandResult> {
  const workDir = path.join(deps.dataDir, 'work', job.jobId, job.attemptId);
  const logFile = path.join(deps.dataDir, 'logs', job.jobId, `${job.attemptId}.log`);
  const sandboxTool = deps.sandboxTool ?? null;
  let sandbox: string[] = [];
  if (sandboxTool !== null) {
    let gpus: GpuDeviceFiles | undefined;
    try {
      gpus = gpusIsolated(job, deps) ? gpuDeviceFiles(attempt.gpus, deps.deviceRoots) : undefined;
    } catch (err) {
      if (!(err instanceof GpuDeviceError)) throw err;
      log.warn({ reason: err.message }, "the job's GPUs cannot be given to its sandbox; job fails");
      return { outcome: 'FAILED', exitCode: null, signal: null, reason: err.message };
    }
    sandbox = [sandboxTool, ...sandboxArgs(deps.policy, { dataDir: deps.dataDir, workDir, gpus })];
  }
  const { sendLogTail } = deps.policy.commands;
  const tail = new LogTail();
  if (!sendLogTail) {
    tail.push(
      'stderr',
      `[hearth-agent: this agent's local policy keeps the job's output on its machine: ${logFile}]`,
    );
  }
  const shipper = new LogShipper({
    tail,
    logger: log,
    signal: deps.forced,
    send: async (batch, seq) => {
      const { jobId, attemptId, fencingToken } = job;
      await deps.guard.event({ type: 'job.log', v: 1, jobId, attemptId, fencingToken, seq, ...batch });
    },
  });
  shipper.start();
  const command = [executable, ...job.command.slice(1)];
  const run = startCommand(
    {
      command: [...sandbox, ...command],
      sandboxed: sandboxTool !== null,
      env: {
        ...deps.jobBaseEnv,
        // In the sandbox /tmp is the job's own, and TMPDIR its working directory (on disk, removed at the end).
        ...(sandboxTool === null ? {} : { TMPDIR: workDir }),
        HOME: workDir,
        ...job.env,
        ...attempt.gpuEnv,
        HEARTH_JOB_ID: job.jobId,
        HEARTH_ATTEMPT_ID: job.attemptId,
      },
      cwd: workDir,
      logFile,
      timeoutSeconds: job.timeoutSeconds,
      cancelGraceSeconds: job.cancelGraceSeconds,
    },
    sendLogTail ? (stream, text) => tail.push(stream, text) : () => undefined,
    MAX_LOG_FILE_BYTES,
    // Lines the tail would drop are counted, not split out one by one; none are split when none go up.
    sendLogTail ? tail.lineGate() : NO_LINES,
  );
  log.info({ pid: run.pid, command: executable }, 'attempt started');
  attempt.attach(run);
  attempt.pid = run.pid ?? null;
  const result = sandboxTool === null ? await run.done : sandboxResult(await run.done);
  tail.end(); // the output is over: its last lines go up, even those the rate limit dropped
  await shipper.finish();
  deps.counters.logLinesDropped += tail.totalDropped;
  // Scratch space only (models go to the artifact root, the full log stays): what a job copied
  // or wrote there must not stay on the disk, nor be left for later jobs to read.
  await removeAttemptDir(workDir).catch((err: unknown) => {
    log.warn({ err: errorMessage(err), workDir }, "could not remove the job's working directory");
  });
  return result;
}

/** The sandbox's launcher exits 128 + N for a job killed by signal N: reported as the kill it was. */
function sandboxResult(result: CommandResult): CommandResult {
  const signal =
    result.outcome === 'FAILED' && result.signal === null ? signalOfSandboxExit(result.exitCode) : null;
  return signal === null ? result : { ...result, signal, reason: `killed by ${signal}` };
}

/** The contract's bound on a reason; reasons may quote file names or tool output, so they are cleaned too. */
const REASON_CHARS = 512;

/** How the attempt's end goes up: JobReleased when the agent's stop ended it, else JobFinished. */
function endOf(attempt: Attempt, result: JobResult): JobFinished | JobReleased {
  const { jobId, attemptId, fencingToken } = attempt.job;
  const at = new Date().toISOString();
  if (result.outcome === 'RELEASED') {
    const reason = clipText(result.reason ?? 'agent stopped', REASON_CHARS);
    return { type: 'job.released', v: 1, jobId, attemptId, fencingToken, reason, releasedAt: at };
  }
  return {
    type: 'job.finished',
    v: 1,
    jobId,
    attemptId,
    fencingToken,
    outcome: result.outcome,
    exitCode: result.exitCode,
    signal: result.signal,
    reason: result.reason === null ? null : clipText(result.reason, REASON_CHARS),
    finishedAt: at,
    ...(result.result ? { result: result.result } : {}),
  };
}

/**
 * Publishes the attempt's end (JobFinished or JobReleased) until the stream acknowledges it; false
 * only when a forced stop cuts it. That includes a stream full for this agent (the control plane
 * has not consumed its share yet): an attempt ends once, so its end is never dropped for room, as
 * log lines and progress are; it is retried with backoff, as for any other failed send.
 */
async function reportFinished(
  attempt: Attempt,
  result: JobResult,
  deps: JobRunnerDeps,
  log: Logger,
): Promise<boolean> {
  let end = endOf(attempt, result);
  for (let i = 0; ; i++) {
    try {
      await deps.guard.event(end);
      return true;
    } catch (err) {
      if (err instanceof EgressRefusedError && end.type === 'job.finished' && end.outcome !== 'FAILED') {
        // The result does not fit the contract (e.g. a model whose column names together pass the
        // message size): no retry will send it, so the attempt fails without it, saying why.
        log.error({ err: err.message }, 'the result cannot be reported; the attempt fails without it');
        end = endOf(attempt, {
          outcome: 'FAILED',
          exitCode: result.exitCode,
          signal: result.signal,
          reason: `the job's result cannot be reported to the control plane: ${err.message}`,
        });
        continue;
      }
      deps.counters.sendFailures++;
      const delay = backoffDelay(i, FINISH_BACKOFF);
      log.warn(
        { err: errorMessage(err), type: end.type, try: i + 1, retryInMs: delay },
        err instanceof StreamFullError
          ? "the attempt's end refused: the stream is full for this agent; retrying until it has room"
          : "the attempt's end not acknowledged; retrying",
      );
      attempt.msg.working();
      if (!(await sleep(delay, deps.forced))) {
        log.error(
          { type: end.type },
          "forced stop before the attempt's end was acknowledged; the dispatch stays unacked",
        );
        return false;
      }
    }
  }
}
