/**
 * The attempts this agent holds right now: received, claimed, running or reporting. The heartbeat
 * reads it (leases), the control loop finds attempts to cancel in it, shutdown kills through it.
 */
import type { JobDispatch } from '@hearth/contracts';
import type { JsMsg } from '@nats-io/jetstream';
import type { GpuDevice } from '../telemetry/gpu-allocator.js';

/** What stops a started attempt: a command's process group, or an in-process job's AbortSignal. */
export interface RunControl {
  /** Stop gracefully (SIGTERM then SIGKILL after graceSeconds, or an abort); CANCELLED. */
  cancel(graceSeconds: number, reason?: string): void;
  /** Stop now because the agent stops (drain timeout, forced stop); RELEASED: given back, unfinished. */
  kill(reason: string): void;
}

export type AttemptState = 'claiming' | 'running' | 'reporting';

export class Attempt {
  state: AttemptState = 'claiming';
  /** The root of the job's process tree, once a command has started (telemetry attributes by it). */
  pid: number | null = null;
  /** The GPUs assigned to the attempt, as its environment names them (see gpu-lease.ts). */
  gpuEnv: Readonly<Record<string, string>> = {};
  /** The GPUs assigned to the attempt (a sandbox gives it their device files only). */
  gpus: readonly GpuDevice[] = [];
  private run: RunControl | null = null;
  private cancelRequest: { graceSeconds: number; reason: string } | null = null;
  private killReason: string | null = null;

  constructor(
    readonly job: JobDispatch,
    /** The latest delivery of the dispatch message: the one to keep alive and to ack. */
    public msg: JsMsg,
  ) {}

  /** A redelivery of a message we already hold: keep the newest delivery. */
  adopt(msg: JsMsg): void {
    this.msg = msg;
  }

  /** Attaches the started run; a cancel or kill that came before start applies now. */
  attach(run: RunControl): void {
    this.run = run;
    if (this.killReason) run.kill(this.killReason);
    else if (this.cancelRequest) run.cancel(this.cancelRequest.graceSeconds, this.cancelRequest.reason);
  }

  /**
   * Set when the attempt must not start: cancelled (CANCELLED), or killed by the agent's stop before
   * its process existed (RELEASED).
   */
  get stopRequested(): { outcome: 'CANCELLED' | 'RELEASED'; reason: string } | null {
    if (this.killReason) return { outcome: 'RELEASED', reason: this.killReason };
    return this.cancelRequest ? { outcome: 'CANCELLED', reason: this.cancelRequest.reason } : null;
  }

  cancel(graceSeconds: number, reason = 'cancelled'): void {
    this.cancelRequest ??= { graceSeconds, reason };
    this.run?.cancel(graceSeconds, reason);
  }

  kill(reason: string): void {
    this.killReason ??= reason;
    this.run?.kill(reason);
  }
}

export class AttemptRegistry {
  private readonly attempts = new Map<string, Attempt>();

  get(attemptId: string): Attempt | undefined {
    return this.attempts.get(attemptId);
  }

  add(job: JobDispatch, msg: JsMsg): Attempt {
    const attempt = new Attempt(job, msg);
    this.attempts.set(job.attemptId, attempt);
    return attempt;
  }

  remove(attempt: Attempt): void {
    if (this.attempts.get(attempt.job.attemptId) === attempt) this.attempts.delete(attempt.job.attemptId);
  }

  /** Claimed attempts, whose leases the heartbeat keeps alive. */
  running(): { attemptId: string; fencingToken: number }[] {
    return [...this.attempts.values()]
      .filter((a) => a.state !== 'claiming')
      .map((a) => ({ attemptId: a.job.attemptId, fencingToken: a.job.fencingToken }));
  }

  /** Started commands with their root processes: whose CPU and GPU use telemetry attributes. */
  runningJobs(): { jobId: string; pid: number }[] {
    return [...this.attempts.values()]
      .filter((a) => a.pid !== null)
      .map((a) => ({ jobId: a.job.jobId, pid: a.pid! }));
  }

  /** The kind and state of every attempt held (the metrics endpoint counts them). */
  held(): { kind: JobDispatch['kind']; state: AttemptState }[] {
    return [...this.attempts.values()].map((a) => ({ kind: a.job.kind, state: a.state }));
  }

  killAll(reason: string): number {
    for (const attempt of this.attempts.values()) attempt.kill(reason);
    return this.attempts.size;
  }

  get size(): number {
    return this.attempts.size;
  }
}
