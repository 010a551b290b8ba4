/**
 * The `run` daemon: connect, heartbeat, consume control messages, pull and run jobs. Two stops:
 * graceful (stop taking jobs, let running ones finish up to the drain timeout, report them, close)
 * and forced (kill every job's process group now).
 */
import path from 'node:path';
import { DOWN_STREAM, consumers } from '@hearth/contracts';
import { jetstream, type Consumer, type JetStreamClient } from '@nats-io/jetstream';
import type { RunConfig } from './config/config.js';
import { backoffDelay, sleep } from './connection/backoff.js';
import { DataDirError, LEDGER_FILE, type AgentIdentity } from './connection/credentials.js';
import { ConnectionState, connectWithRetry, natsTarget } from './connection/nats.js';
import { EgressGuard } from './egress/guard.js';
import { EgressLedger } from './egress/ledger.js';
import { AttemptRegistry } from './executor/attempts.js';
import { handleControl, runControlLoop } from './executor/control-loop.js';
import { JobLoop } from './executor/job-loop.js';
import { runLogRetention } from './executor/log-retention.js';
import { prepareSandbox } from './executor/sandbox.js';
import { handleDispatch } from './executor/job-runner.js';
import { errorMessage, type Logger } from './logger.js';
import { AgentMetrics } from './metrics/agent-metrics.js';
import { startMetricsServer, type MetricsServer } from './metrics/metrics-server.js';
import { ServeHost } from './serve/serve-host.js';
import { TelemetryCollector } from './telemetry/collector.js';
import { AgentCounters } from './telemetry/counters.js';
import { GpuAllocator } from './telemetry/gpu-allocator.js';
import { detectGpus } from './telemetry/gpus.js';
import { runHeartbeats } from './telemetry/heartbeat.js';
import { systemInfo } from './telemetry/system-info.js';
import { TelemetryLoop } from './telemetry/telemetry-loop.js';
import { AGENT_VERSION } from './version.js';

export interface StopSignals {
  /** First SIGTERM/SIGINT: stop taking jobs and drain. */
  graceful: AbortSignal;
  /** Second signal: kill running jobs and go. */
  forced: AbortSignal;
}

/** After the drain timeout has killed what was left, how long their results may take to go up. */
const REPORT_AFTER_KILL_MS = 10_000;
/** The same after a forced stop (the CLI exits 3 s after the second signal regardless). */
const REPORT_AFTER_FORCE_MS = 2000;

export async function runAgent(
  config: RunConfig,
  identity: AgentIdentity,
  logger: Logger,
  stop: StopSignals,
): Promise<number> {
  const registry = new AttemptRegistry();
  const killAll = () => registry.killAll('agent stopped (forced)');
  stop.forced.addEventListener('abort', killAll, { once: true });

  const { policy } = config;
  // A sandbox the policy asks for and this machine cannot give stops the agent at start (SandboxError).
  const sandboxTool =
    policy.commands.sandbox === null ? null : prepareSandbox(policy, config.jobBaseEnv.PATH, config.dataDir);
  const system = systemInfo(await detectGpus());
  logger.info(
    {
      system,
      maxJobs: config.maxJobs,
      policy: {
        file: policy.file,
        dataRoots: policy.dataRoots,
        artifactRoot: policy.artifactRoot,
        commands: { ...policy.commands, sandboxTool },
        serve: policy.serve,
        metrics: policy.metrics,
        logs: policy.logs,
      },
    },
    'agent starting',
  );
  const ledger = openLedger(config.dataDir);
  const counters = new AgentCounters();
  const connection = new ConnectionState();
  const metrics =
    policy.metrics.port === null
      ? null
      : new AgentMetrics({
          agentId: identity.file.agentId,
          version: AGENT_VERSION,
          counters,
          attempts: () => registry.held(),
          connected: () => connection.connected,
          egress: () => ledger.sent(),
          served: () => serve.deployments(),
          serveWorkers: () => serve.workerPids().length,
        });
  // The inference server starts with the first serve job, on the policy's address.
  const serve: ServeHost = new ServeHost({
    address: policy.serve,
    threads: policy.serve.threads,
    workers: policy.serve.workers,
    logger: logger.child({ component: 'serve' }),
    observer: metrics ?? undefined,
  });
  // Up before the connection, so that monitoring sees an agent that cannot reach its control plane.
  let endpoint: MetricsServer | null = null;
  if (metrics) {
    try {
      endpoint = await startMetricsServer({
        host: policy.metrics.host,
        port: policy.metrics.port!,
        tls: policy.metrics.tls,
        registry: metrics.registry,
        ready: () => connection.connected,
        logger: logger.child({ component: 'metrics' }),
      });
    } catch (err) {
      ledger.close();
      throw err;
    }
  }
  const target = natsTarget(
    config.natsUrl ? config.natsUrl.split(',') : identity.file.natsServers,
    config.allowPlaintext,
  );
  // What the default would have required and --allow-plaintext let go: said at every start.
  if (target.plaintextAllowed)
    logger.warn(
      { servers: target.servers },
      '--allow-plaintext: the NATS connection to another machine may be unencrypted (jobs, their log tails and results)',
    );
  const nc = await connectWithRetry(identity, target, logger, stop.graceful, connection);
  if (!nc) {
    await endpoint?.close();
    ledger.close();
    logger.info('agent stopped before it could connect');
    return stop.forced.aborted ? 1 : 0;
  }

  const js = jetstream(nc);
  const guard = new EgressGuard({ nc, js, ledger, address: identity.address });
  const shutdown = new AbortController();
  stop.forced.addEventListener('abort', () => shutdown.abort(), { once: true });
  // Telemetry: the first sample, before any job, tells the GPU allocator what the host has.
  const gpus = new GpuAllocator();
  const telemetry = new TelemetryLoop({
    agentId: identity.file.agentId,
    intervalSeconds: config.telemetry.intervalSeconds,
    bufferCapacity: config.telemetry.bufferSamples,
    collector: new TelemetryCollector({
      runningJobs: () => registry.runningJobs(),
      assignedJob: (gpu) => gpus.ownerOf(gpu),
    }),
    send: (message) => guard.telemetry(message),
    allocator: gpus,
    counters,
    logger: logger.child({ component: 'telemetry' }),
  });
  await telemetry.sampleOnce();

  const [jobConsumer, ctlConsumer] = await Promise.all([
    getConsumer(js, consumers.jobs(identity.file.agentId), logger, stop.graceful),
    getConsumer(js, consumers.control(identity.file.agentId), logger, stop.graceful),
  ]);

  const jobs = jobConsumer
    ? new JobLoop(
        jobConsumer,
        config.maxJobs,
        (msg, release) =>
          handleDispatch(
            msg,
            {
              dataDir: config.dataDir,
              jobBaseEnv: config.jobBaseEnv,
              guard,
              registry,
              counters,
              logger,
              gpus,
              policy,
              sandboxTool,
              serve,
              stopTaking: stop.graceful,
              forced: stop.forced,
            },
            release,
          ),
        logger,
      )
    : null;

  const loops: Promise<void>[] = [
    runHeartbeats(
      {
        agentId: identity.file.agentId,
        intervalSeconds: identity.file.heartbeatSeconds,
        system,
        stopping: stop.graceful,
        source: {
          running: () => registry.running(),
          freeSlots: () => jobs?.freeSlots(stop.graceful.aborted) ?? 0,
        },
        guard,
        counters,
        logger,
      },
      shutdown.signal,
    ),
    telemetry.run(shutdown.signal),
    runLogRetention(
      {
        logsDir: path.join(config.dataDir, 'logs'),
        retention: policy.logs,
        running: (attemptId) => registry.get(attemptId) !== undefined,
        logger,
      },
      shutdown.signal,
    ),
  ];
  if (ctlConsumer) {
    loops.push(
      runControlLoop(
        ctlConsumer,
        (msg) => handleControl(msg, registry, counters, logger),
        logger,
        shutdown.signal,
      ),
    );
  }
  if (jobs) {
    logger.info('agent ready: taking jobs');
    await jobs.run(stop.graceful);
    await drain(jobs, registry, config.drainSeconds, logger, stop.forced);
  }
  await serve.close({ force: stop.forced.aborted });

  shutdown.abort();
  await Promise.allSettled(loops);
  try {
    await nc.drain();
  } catch (err) {
    logger.warn({ err: errorMessage(err) }, 'closing the NATS connection failed');
  }
  await endpoint?.close();
  ledger.close();
  logger.info({ counters: counters.snapshot(), forced: stop.forced.aborted }, 'agent stopped');
  return stop.forced.aborted ? 1 : 0;
}

/**
 * Waits for running jobs up to the drain timeout (or a forced stop); then kills what is left and
 * gives the killed jobs a short while to report, so the control plane learns why they ended.
 */
async function drain(
  jobs: JobLoop,
  registry: AttemptRegistry,
  drainSeconds: number,
  logger: Logger,
  forced: AbortSignal,
): Promise<void> {
  if (registry.size > 0) logger.info({ running: registry.size, drainSeconds }, 'draining running jobs');
  if (await settled(jobs, registry, AbortSignal.any([forced, AbortSignal.timeout(drainSeconds * 1000)])))
    return;
  if (!forced.aborted) {
    const killed = registry.killAll(`agent stopped: drain timeout of ${drainSeconds}s`);
    logger.warn({ killed }, 'drain timeout: running jobs killed');
  }
  await settled(
    jobs,
    registry,
    AbortSignal.timeout(forced.aborted ? REPORT_AFTER_FORCE_MS : REPORT_AFTER_KILL_MS),
  );
}

/**
 * Every attempt has reported: the job loop is idle and the registry empty (deployments hold no job
 * slot, so the loop alone does not cover them).
 */
async function settled(jobs: JobLoop, registry: AttemptRegistry, signal: AbortSignal): Promise<boolean> {
  if (!(await jobs.idle(signal))) return false;
  while (registry.size > 0) {
    if (signal.aborted) return false;
    await sleep(25, signal);
  }
  return true;
}

function openLedger(dataDir: string): EgressLedger {
  const file = path.join(dataDir, LEDGER_FILE);
  try {
    return EgressLedger.open(file);
  } catch (err) {
    throw new DataDirError(`cannot open the egress ledger ${file}: ${errorMessage(err)}`);
  }
}

/** Looks up one of the agent's durable consumers (CONSUMER.INFO only), retrying until it exists. */
async function getConsumer(
  js: JetStreamClient,
  name: string,
  logger: Logger,
  signal: AbortSignal,
): Promise<Consumer | null> {
  for (let i = 0; !signal.aborted; i++) {
    try {
      return await js.consumers.get(DOWN_STREAM, name);
    } catch (err) {
      const delay = backoffDelay(i);
      logger.error(
        { err: errorMessage(err), consumer: name, retryInMs: delay },
        'cannot find consumer; retrying',
      );
      await sleep(delay, signal);
    }
  }
  return null;
}
