import { afterAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encode, JobDispatch, type JobClaim, type JobClaimReply, type UpEvent } from '@hearth/contracts';
import { jobDispatch, livingProcesses, waitFor, writeFakeGpuDriver } from '@hearth/testing';
import type { JsMsg, PubAck } from '@nats-io/jetstream';
import { pino } from 'pino';
import { parseLocalPolicy } from '../policy/local-policy.js';
import { ServeHost } from '../serve/serve-host.js';
import { AgentCounters } from '../telemetry/counters.js';
import { GpuAllocator } from '../telemetry/gpu-allocator.js';
import { EgressRefusedError, StreamFullError } from '../egress/guard.js';
import { AttemptRegistry } from './attempts.js';
import { handleDispatch, type JobRunnerDeps } from './job-runner.js';
import { prepareSandbox, SandboxError } from './sandbox.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-job-runner-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A dispatch message that records what the runner did with it. */
function message(data: Uint8Array) {
  const calls: string[] = [];
  const msg = {
    data,
    subject: 'hearth.test.down.job',
    seq: 1,
    ack: () => calls.push('ack'),
    ackAck: async () => (calls.push('ack'), true),
    term: () => calls.push('term'),
    nak: () => calls.push('nak'),
    working: () => calls.push('working'),
  } as unknown as JsMsg;
  return { msg, calls };
}

function dispatch(command: string[]): JobDispatch {
  return jobDispatch({
    fencingToken: 7,
    kind: 'command',
    command,
    env: { GREETING: 'hi' },
    timeoutSeconds: 30,
    cancelGraceSeconds: 1,
  });
}

interface FakeGuard {
  claims: JobClaim[];
  events: UpEvent[];
  claimFailures: number;
  eventFailures: number;
  /** The egress guard refuses a SUCCEEDED end, as it does a result over the contract's bounds. */
  refuseSucceeded?: boolean;
  /** The stream is full for this agent: it refuses log and progress events, and this many ends. */
  fullFor?: number;
  /** Log batches the runner tried to send. */
  logTries: number;
  reply: JobClaimReply;
}

/** `policy`: more of the local policy than the data and artifact roots every setup has. */
function setup(fake: Partial<FakeGuard> = {}, policy: object = {}) {
  const guard: FakeGuard = {
    claims: [],
    events: [],
    claimFailures: 0,
    eventFailures: 0,
    logTries: 0,
    reply: { type: 'job.claim.reply', v: 1, ok: true },
    ...fake,
  };
  const counters = new AgentCounters();
  const dataDir = fs.mkdtempSync(path.join(root, 'data-'));
  const deps: JobRunnerDeps = {
    dataDir,
    jobBaseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin', TMPDIR: os.tmpdir() },
    registry: new AttemptRegistry(),
    counters,
    logger: pino({ level: 'silent' }),
    stopTaking: new AbortController().signal,
    forced: new AbortController().signal,
    policy: parseLocalPolicy(
      {
        dataRoots: [path.join(dataDir, 'datasets')],
        artifactRoot: path.join(dataDir, 'artifacts'),
        ...policy,
      },
      path.join(dataDir, 'policy.json'),
    ),
    serve: new ServeHost({ address: { host: '127.0.0.1', port: 0 }, logger: pino({ level: 'silent' }) }),
    guard: {
      claim: async (claim) => {
        guard.claims.push(claim);
        if (guard.claimFailures-- > 0) throw new Error('503 No Responders Available For Request');
        return guard.reply;
      },
      event: async (event) => {
        if (event.type === 'job.log') guard.logTries++;
        const full = () =>
          new StreamFullError(`${event.type} refused by the stream: maximum messages per subject exceeded`);
        if (guard.fullFor !== undefined && (event.type === 'job.log' || event.type === 'job.progress'))
          throw full();
        if (event.type === 'job.finished' && guard.fullFor !== undefined && guard.fullFor-- > 0) throw full();
        if (event.type === 'job.finished' && guard.eventFailures-- > 0) throw new Error('TIMEOUT');
        if (event.type === 'job.finished' && event.outcome === 'SUCCEEDED' && guard.refuseSucceeded)
          throw new EgressRefusedError('refused to send an invalid job.finished message: message too large');
        guard.events.push(event);
        return { stream: 'HEARTH_UP', seq: guard.events.length, duplicate: false } as PubAck;
      },
    },
  };
  // The sandbox is found and tried as the agent does at start.
  if (deps.policy.commands.sandbox)
    deps.sandboxTool = prepareSandbox(deps.policy, deps.jobBaseEnv.PATH, dataDir);
  return { guard, counters, deps, dataDir };
}

const finishedOf = (events: UpEvent[]) => events.filter((e) => e.type === 'job.finished');

describe('handleDispatch', () => {
  it('terminates an invalid message, counts it, and claims nothing', async () => {
    const { guard, counters, deps } = setup();
    const { msg, calls } = message(new TextEncoder().encode('{"type":"job.dispatch","v":1,"command":[]}'));
    await handleDispatch(msg, deps);
    expect(calls).toEqual(['term']);
    expect(counters.invalidDispatch).toBe(1);
    expect(guard.claims).toEqual([]);
  });

  it('never runs an attempt whose claim is refused', async () => {
    const { guard, deps, dataDir } = setup({
      reply: { type: 'job.claim.reply', v: 1, ok: false, reason: 'stale' },
    });
    const marker = path.join(dataDir, 'ran');
    const { msg, calls } = message(encode(JobDispatch, dispatch(['touch', marker])));
    await handleDispatch(msg, deps);
    expect(calls).toEqual(['term']);
    expect(fs.existsSync(marker)).toBe(false);
    expect(guard.events).toEqual([]);
  });

  it('retries the claim while the control plane does not answer, keeping the message alive', async () => {
    const { guard, counters, deps } = setup({ claimFailures: 2 });
    const job = dispatch(['node', '-e', 'console.log(process.env.GREETING, process.env.HEARTH_JOB_ID)']);
    const { msg, calls } = message(encode(JobDispatch, job));
    await handleDispatch(msg, deps);
    expect(guard.claims).toHaveLength(3);
    expect(counters.claimFailures).toBe(2);
    expect(calls.filter((c) => c === 'working')).toHaveLength(2);
    expect(finishedOf(guard.events)).toMatchObject([{ outcome: 'SUCCEEDED', attemptId: job.attemptId }]);
    const logLines = guard.events.flatMap((e) => (e.type === 'job.log' ? e.lines.map((l) => l.text) : []));
    expect(logLines).toEqual([`hi ${job.jobId}`]);
    expect(calls.at(-1)).toBe('ack');
  });

  it('retries JobFinished until the stream acknowledges it, and acks the dispatch only then', async () => {
    const { guard, counters, deps } = setup({ eventFailures: 2 });
    const { msg, calls } = message(encode(JobDispatch, dispatch(['sh', '-c', 'exit 4'])));
    await handleDispatch(msg, deps);
    expect(counters.sendFailures).toBe(2);
    expect(finishedOf(guard.events)).toMatchObject([
      { outcome: 'FAILED', exitCode: 4, reason: 'exited with code 4' },
    ]);
    expect(calls).toEqual(['working', 'working', 'ack']);
  });

  it('retries JobFinished while the stream is full, and drops and counts the log lines instead', async () => {
    const { guard, counters, deps } = setup({ fullFor: 2 });
    const { msg, calls } = message(
      encode(JobDispatch, dispatch(['node', '-e', 'for (let i = 0; i < 30; i++) console.log("line", i)'])),
    );
    await handleDispatch(msg, deps);
    expect(guard.events.filter((e) => e.type === 'job.log')).toEqual([]);
    expect(counters.logLinesDropped).toBe(30);
    // Once per flush (the lines come out within a tick or two), never retried while the stream is full.
    expect(guard.logTries).toBeGreaterThanOrEqual(1);
    expect(guard.logTries).toBeLessThanOrEqual(2);
    expect(counters.sendFailures).toBe(2);
    expect(finishedOf(guard.events)).toMatchObject([{ outcome: 'SUCCEEDED', exitCode: 0 }]);
    expect(calls).toEqual(['working', 'working', 'ack']);
  });

  it("sends a job's last lines even when a burst before them went over the log rate", async () => {
    const { guard, counters, deps } = setup();
    const script =
      'for (let i = 0; i < 500; i++) console.log("noise", i); console.error("Traceback: the real error")';
    const { msg } = message(encode(JobDispatch, dispatch(['node', '-e', script])));
    await handleDispatch(msg, deps);
    const logs = guard.events.filter((e) => e.type === 'job.log');
    const lines = logs.flatMap((e) => e.lines);
    // stdout and stderr are two pipes: in what order the agent reads their last chunks is not
    // known, so the test asks only that the last line of each went up.
    expect(lines).toContainEqual({ stream: 'stderr', text: 'Traceback: the real error' });
    expect(lines).toContainEqual({ stream: 'stdout', text: 'noise 499' });
    // Every line is either sent or counted as dropped, once.
    const dropped = logs.reduce((sum, e) => sum + e.dropped, 0);
    expect(lines.length + dropped).toBe(501);
    expect(counters.logLinesDropped).toBe(dropped);
  });

  it('fails an attempt whose result the contract refuses, instead of retrying it forever', async () => {
    const { guard, deps } = setup({ refuseSucceeded: true });
    const { msg, calls } = message(encode(JobDispatch, dispatch(['true'])));
    await handleDispatch(msg, deps);
    expect(finishedOf(guard.events)).toMatchObject([
      {
        outcome: 'FAILED',
        exitCode: 0,
        reason:
          "the job's result cannot be reported to the control plane: refused to send an invalid job.finished message: message too large",
      },
    ]);
    expect(calls).toEqual(['ack']);
  });

  it('reports a job the local policy refuses as FAILED without claiming it, and acks it', async () => {
    const { guard, counters, deps } = setup();
    const job: JobDispatch = jobDispatch({
      fencingToken: 7,
      timeoutSeconds: 30,
      cancelGraceSeconds: 1,
      kind: 'train',
      train: {
        dataset: { uri: 'file:///etc/passwd.csv' },
        target: 'y',
        task: 'regression',
        model: { type: 'linear' },
        epochs: 1,
        batchSize: 32,
        learningRate: 0.01,
        validationSplit: 0,
        seed: 0,
      },
    });
    const { msg, calls } = message(encode(JobDispatch, job));
    await handleDispatch(msg, deps);
    expect(guard.claims).toEqual([]);
    expect(finishedOf(guard.events)).toMatchObject([
      {
        outcome: 'FAILED',
        attemptId: job.attemptId,
        reason: expect.stringMatching(/^the dataset file:\/\/\/etc\/passwd\.csv is outside the data roots/),
      },
    ]);
    expect(calls).toEqual(['ack']);
    expect(counters.jobsRefused).toBe(1);
  });

  it('refuses a command job that sets an environment variable the policy denies, and runs nothing', async () => {
    const { guard, deps, dataDir } = setup();
    const marker = path.join(dataDir, 'ran');
    const job = jobDispatch({
      kind: 'command',
      command: ['touch', marker],
      env: { LD_PRELOAD: '/tmp/x.so' },
    });
    const { msg, calls } = message(encode(JobDispatch, job));
    await handleDispatch(msg, deps);
    expect(guard.claims).toEqual([]);
    expect(finishedOf(guard.events)).toMatchObject([
      { outcome: 'FAILED', reason: expect.stringMatching(/sets the environment variable LD_PRELOAD, which/) },
    ]);
    expect(calls).toEqual(['ack']);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('keeps the output on the machine when the policy says so: one line says where, none of it goes up', async () => {
    const { guard, deps, dataDir } = setup({}, { commands: { sendLogTail: false } });
    const job = dispatch([
      'node',
      '-e',
      'console.log("row 1: 123-45-6789"); console.error("and stderr too")',
    ]);
    const { msg } = message(encode(JobDispatch, job));
    await handleDispatch(msg, deps);
    expect(finishedOf(guard.events)).toMatchObject([{ outcome: 'SUCCEEDED' }]);
    const logFile = path.join(dataDir, 'logs', job.jobId, `${job.attemptId}.log`);
    const sent = guard.events.flatMap((e) => (e.type === 'job.log' ? e.lines : []));
    expect(sent).toEqual([
      {
        stream: 'stderr',
        text: `[hearth-agent: this agent's local policy keeps the job's output on its machine: ${logFile}]`,
      },
    ]);
    expect(fs.readFileSync(logFile, 'utf8')).toContain('row 1: 123-45-6789');
  });

  it('gives back an attempt the agent kills as it stops: JobReleased instead of JobFinished, then the ack', async () => {
    const { guard, deps } = setup();
    const job = dispatch([
      'node',
      '-e',
      "process.on('SIGTERM',()=>{});console.log('up');setInterval(()=>{},1000)",
    ]);
    const { msg, calls } = message(encode(JobDispatch, job));
    const handled = handleDispatch(msg, deps);
    await waitFor(() => deps.registry.runningJobs().length > 0, {
      timeoutMs: 10_000,
      intervalMs: 20,
      what: 'the command to start',
    });
    expect(deps.registry.killAll('agent stopped: drain timeout of 30s')).toBe(1);
    await handled;
    expect(finishedOf(guard.events)).toEqual([]);
    expect(guard.events.filter((e) => e.type === 'job.released')).toEqual([
      {
        type: 'job.released',
        v: 1,
        jobId: job.jobId,
        attemptId: job.attemptId,
        fencingToken: 7,
        reason: 'agent stopped: drain timeout of 30s',
        releasedAt: expect.any(String),
      },
    ]);
    expect(calls.at(-1)).toBe('ack');
  });

  it('gives the message back (nak) when stopping before the claim succeeds', async () => {
    const { deps } = setup({ claimFailures: 100 });
    const stopping = new AbortController();
    const { msg, calls } = message(encode(JobDispatch, dispatch(['true'])));
    const handled = handleDispatch(msg, { ...deps, stopTaking: stopping.signal });
    setTimeout(() => stopping.abort(), 100);
    await handled;
    expect(calls.at(-1)).toBe('nak');
    expect(calls).not.toContain('ack');
  });
});

/** The text of every log line the job sent up. */
const sentText = (events: UpEvent[]) =>
  events.flatMap((e) => (e.type === 'job.log' ? e.lines : [])).map((l) => l.text);

/** Living processes whose arguments include `arg`. */
const processesWith = (arg: string) => livingProcesses((p) => p.argv.includes(arg));

describe('command jobs in the sandbox (commands.sandbox, bubblewrap)', () => {
  const strays: number[] = [];
  afterAll(() => {
    for (const pid of strays) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });

  it("sees its own working directory, the data roots read-only and the artifact root, and nothing of the agent's", async () => {
    const { guard, deps, dataDir } = setup({}, { commands: { sandbox: { network: false } } });
    fs.writeFileSync(path.join(dataDir, 'agent.seed'), 'SUAFAKESEED');
    fs.mkdirSync(path.join(dataDir, 'datasets'));
    fs.mkdirSync(path.join(dataDir, 'artifacts'));
    fs.writeFileSync(path.join(dataDir, 'datasets', 'rows.csv'), 'a,b\n1,2\n');
    // Another process of the agent's user, with a secret in its environment.
    const other = spawn('sleep', ['297'], {
      env: { ...process.env, OTHER_SECRET: 'hunter2' },
      stdio: 'ignore',
    });
    strays.push(other.pid!);
    const script = [
      'test -e "$DATA/agent.seed" && echo "seed: visible" || echo "seed: hidden"',
      'echo "dataset: $(cat "$DATA/datasets/rows.csv" | wc -l) lines"',
      'touch "$DATA/datasets/new" 2>/dev/null && echo "data root: writable" || echo "data root: read-only"',
      'echo onnx > "$DATA/artifacts/model.onnx" && echo "artifact root: written"',
      'echo scratch > scratch.txt && echo "work dir: written"',
      'touch /usr/hearth-x 2>/dev/null && echo "/usr: writable" || echo "/usr: read-only"',
      `cat /proc/${other.pid}/environ 2>/dev/null | tr '\\0' '\\n' | grep OTHER_SECRET || echo "other process: not visible"`,
      'echo "processes: $(ls /proc | grep -c "^[0-9]")"',
      'test -e "$HOST_TMP_FILE" && echo "host /tmp: visible" || echo "host /tmp: not visible"',
      'echo "TMPDIR is the work dir: $([ "$TMPDIR" = "$PWD" ] && echo yes)"',
      `node -e "require('net').connect(4222,'127.0.0.1').on('connect',()=>{console.log('network: open');process.exit()}).on('error',()=>console.log('network: none'))"`,
    ].join('\n');
    const hostTmpFile = path.join('/tmp', `hearth-host-file-${process.pid}`);
    fs.writeFileSync(hostTmpFile, 'x');
    const job = jobDispatch({
      kind: 'command',
      command: ['sh', '-c', script],
      env: { DATA: dataDir, HOST_TMP_FILE: hostTmpFile },
    });
    const { msg } = message(encode(JobDispatch, job));
    await handleDispatch(msg, deps);
    expect(finishedOf(guard.events)).toMatchObject([{ outcome: 'SUCCEEDED', exitCode: 0 }]);
    const lines = sentText(guard.events);
    expect(lines).toEqual(
      expect.arrayContaining([
        'seed: hidden',
        'dataset: 2 lines',
        'data root: read-only',
        'artifact root: written',
        'work dir: written',
        '/usr: read-only',
        'other process: not visible',
        'host /tmp: not visible',
        'TMPDIR is the work dir: yes',
        'network: none',
      ]),
    );
    // sh, the pipeline's processes and bubblewrap's own init: none of the host's.
    expect(Number(lines.find((l) => l.startsWith('processes: '))!.slice(11))).toBeLessThan(8);
    expect(fs.readFileSync(path.join(dataDir, 'artifacts', 'model.onnx'), 'utf8')).toBe('onnx\n');
    expect(fs.readFileSync(path.join(dataDir, 'agent.seed'), 'utf8')).toBe('SUAFAKESEED');
    fs.rmSync(hostTmpFile);
  });

  it('leaves nothing running after the job, and a cancel gives the job its grace period', async () => {
    const { guard, deps } = setup({}, { commands: { sandbox: {} } });
    const script =
      'trap "echo got TERM; sleep 0.3; echo cleaned up; exit 0" TERM; setsid sleep 311 & echo started; ' +
      'while :; do sleep 0.1; done';
    const job = jobDispatch({ kind: 'command', command: ['sh', '-c', script], cancelGraceSeconds: 10 });
    const { msg } = message(encode(JobDispatch, job));
    const handled = handleDispatch(msg, deps);
    await waitFor(() => processesWith('311').length > 0, {
      timeoutMs: 10_000,
      intervalMs: 20,
      what: 'the job and its escaped process to start',
    });
    strays.push(...processesWith('311'));
    deps.registry.get(job.attemptId)!.cancel(10, 'cancelled by a user');
    await handled;
    expect(finishedOf(guard.events)).toMatchObject([{ outcome: 'CANCELLED', reason: 'cancelled by a user' }]);
    expect(sentText(guard.events)).toEqual(expect.arrayContaining(['started', 'got TERM', 'cleaned up']));
    // The escaped process left the job's process group, not its sandbox.
    expect(processesWith('311')).toEqual([]);
  });

  it('reports a job killed inside the sandbox as killed, not as an exit code', async () => {
    const { guard, deps } = setup({}, { commands: { sandbox: {} } });
    const { msg } = message(encode(JobDispatch, dispatch(['sh', '-c', 'kill -9 $$'])));
    await handleDispatch(msg, deps);
    expect(finishedOf(guard.events)).toMatchObject([
      { outcome: 'FAILED', exitCode: 137, signal: 'SIGKILL', reason: 'killed by SIGKILL' },
    ]);
  });

  describe('GPUs', () => {
    const U0 = 'GPU-7d1e0c2b-0000-4000-8000-000000000000';
    const U1 = 'GPU-7d1e0c2b-0000-4000-8000-000000000001';
    /** Two NVIDIA GPUs whose minor numbers are not nvidia-smi's indices, in a data root the job can read. */
    function withGpus(policy: object = {}) {
      const ready = setup({}, { commands: { sandbox: { ...policy } } });
      const fake = path.join(ready.dataDir, 'datasets', 'driver');
      ready.deps.deviceRoots = writeFakeGpuDriver(fake, [
        { vendor: 'nvidia', uuid: U0, minor: 1, bus: '0000:18:00.0' },
        { vendor: 'nvidia', uuid: U1, minor: 0, bus: '0000:2a:00.0' },
      ]);
      ready.deps.gpus = new GpuAllocator(
        [
          { vendor: 'nvidia', index: 0, uuid: U0 },
          { vendor: 'nvidia', index: 1, uuid: U1 },
        ],
        { cudaDevicesBy: 'index' },
      );
      return { ...ready, proc: ready.deps.deviceRoots.proc };
    }
    /** A device of this host that the minimal /dev has not. */
    const hostDevice = ['fuse', 'kvm', 'loop-control', 'vda', 'sda'].find((d) => fs.existsSync(`/dev/${d}`))!;
    const script = [
      'echo "devices: $(ls /dev | grep nvidia | tr "\n" " ")"',
      'echo "opened: $(cat /dev/nvidia* 2>/dev/null | tr "\n" " ")"',
      'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"',
      'for e in "$PROC"/driver/nvidia/gpus/*; do echo "entry $(basename "$e"): $(grep -c UUID "$e/information" 2>/dev/null || echo hidden)"; done',
      `test -e /dev/${hostDevice} && echo "host device: visible" || echo "host device: not visible"`,
    ].join('\n');
    /** What the script prints in a sandboxed job asking for `gpus`. */
    async function seen(ready: ReturnType<typeof withGpus>, gpus = 0): Promise<string[]> {
      const env = { PROC: ready.proc };
      const job = jobDispatch({
        kind: 'command',
        command: ['sh', '-c', script],
        env,
        ...(gpus ? { gpus } : {}),
      });
      await handleDispatch(message(encode(JobDispatch, job)).msg, ready.deps);
      expect(finishedOf(ready.guard.events)).toMatchObject([{ outcome: 'SUCCEEDED' }]);
      return sentText(ready.guard.events);
    }

    it("opens only its own GPU's device file, numbered from 0, and the driver lists only that GPU", async () => {
      // GPU 0 (uuid U0) is /dev/nvidia1 on this host.
      expect(await seen(withGpus(), 1)).toEqual([
        'devices: nvidia-uvm nvidia-uvm-tools nvidia1 nvidiactl ',
        'opened: nvidia-uvm nvidia-uvm-tools nvidia1 nvidiactl ',
        'CUDA_VISIBLE_DEVICES=0',
        'entry 0000:18:00.0: 1',
        'entry 0000:2a:00.0: hidden',
        'host device: not visible',
      ]);
    });

    it('gets no GPU device file when it asked for none, and the host devices the policy lists', async () => {
      expect(await seen(withGpus({ devices: [`/dev/${hostDevice}`] }))).toEqual(
        expect.arrayContaining(['devices: ', 'CUDA_VISIBLE_DEVICES=-1', 'host device: visible']),
      );
    });

    it('shares every host device, GPUs numbered as on the host, when the policy lists /dev', async () => {
      const ready = withGpus({ devices: ['/dev'] });
      ready.deps.gpus!.assign('another job', 1); // GPU 0 is taken: this job gets GPU 1
      expect(await seen(ready, 1)).toEqual(
        expect.arrayContaining(['CUDA_VISIBLE_DEVICES=1', 'host device: visible', 'entry 0000:18:00.0: 1']),
      );
    });

    it('fails a job whose GPU has no device file it can find, and runs nothing', async () => {
      const { guard, deps, dataDir } = withGpus();
      deps.gpus!.setDevices([
        { vendor: 'nvidia', index: 0, uuid: 'GPU-7d1e0c2b-0000-4000-8000-0000000000ff' },
      ]);
      const marker = path.join(dataDir, 'artifacts', 'ran');
      fs.mkdirSync(path.dirname(marker), { recursive: true });
      const job = jobDispatch({ kind: 'command', command: ['touch', marker], gpus: 1 });
      await handleDispatch(message(encode(JobDispatch, job)).msg, deps);
      expect(finishedOf(guard.events)).toMatchObject([
        {
          outcome: 'FAILED',
          reason: expect.stringMatching(
            /^cannot find the device file of NVIDIA GPU GPU-7d1e0c2b-0000-4000-8000-0000000000ff: no entry under /,
          ),
        },
      ]);
      expect(fs.existsSync(marker)).toBe(false);
      // The GPU is free again for the next job.
      expect(deps.gpus!.free()).toHaveLength(1);
    });
  });

  it('stops the agent at start, saying what to do, when the sandbox cannot be had', () => {
    const policy = parseLocalPolicy(
      { commands: { sandbox: { hidePaths: ['/no/such/dir'] } } },
      'policy.json',
    );
    expect(() => prepareSandbox(policy, '/nonexistent-bin', root)).toThrow(
      new SandboxError(
        'the local policy asks for a sandbox for command jobs ("commands.sandbox" in policy.json), but ' +
          "bubblewrap is not installed (no bwrap on the agent's PATH): install it (Debian, Ubuntu: apt-get " +
          'install bubblewrap; RHEL: dnf install bubblewrap), or remove "sandbox"',
      ),
    );
    expect(() => prepareSandbox(policy, process.env.PATH ?? '/usr/bin', root)).toThrow(
      'the sandbox\'s hidePaths names /no/such/dir, which does not exist ("commands.sandbox" in policy.json)',
    );
  });
});
