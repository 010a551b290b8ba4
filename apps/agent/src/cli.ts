/**
 * hearth-agent: `join` enrolls this machine with a control plane, `run` is the daemon.
 * Exit codes: 0 ok (including a graceful stop), 1 failure or forced stop, 2 bad usage.
 */
import { Command } from 'commander';
import {
  ConfigError,
  parseJoinConfig,
  parseRunConfig,
  type JoinFlags,
  type RunFlags,
} from './config/config.js';
import { DataDirError, loadIdentity } from './connection/credentials.js';
import { JoinError, join } from './connection/join.js';
import { createLogger, errorMessage } from './logger.js';
import { runAgent } from './main.js';
import { SandboxError } from './executor/sandbox.js';
import { MetricsEndpointError } from './metrics/metrics-server.js';
import { AGENT_VERSION } from './version.js';

/** After a forced stop, how long the agent may take to report the killed jobs before it exits. */
const FORCED_EXIT_MS = 3000;

const collect = (value: string, previous: string[]) => [...previous, value];

/** Known failures print their message; anything else is a bug and prints its stack. */
function fail(err: unknown): never {
  const known =
    err instanceof ConfigError ||
    err instanceof DataDirError ||
    err instanceof JoinError ||
    err instanceof MetricsEndpointError ||
    err instanceof SandboxError;
  const text = known || !(err instanceof Error) ? errorMessage(err) : (err.stack ?? err.message);
  process.stderr.write(`hearth-agent: ${text}\n`);
  process.exit(err instanceof ConfigError || err instanceof SandboxError ? 2 : 1);
}

async function joinCommand(flags: JoinFlags): Promise<void> {
  const config = parseJoinConfig(flags);
  const file = await join(config);
  process.stdout.write(`joined as agent ${file.agentId}\n`);
}

async function runCommand(flags: RunFlags): Promise<void> {
  const config = parseRunConfig(flags);
  const identity = loadIdentity(config.dataDir);
  const logger = createLogger(config.logLevel, { agentId: identity.file.agentId });
  const graceful = new AbortController();
  const forced = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (!graceful.signal.aborted) {
      logger.info({ signal }, 'stopping: no new jobs, draining running ones (signal again to force)');
      graceful.abort();
      return;
    }
    if (forced.signal.aborted) return;
    logger.warn({ signal }, 'forced stop: killing running jobs');
    forced.abort();
    setTimeout(() => process.exit(1), FORCED_EXIT_MS);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: errorMessage(reason) }, 'unhandled rejection');
  });
  const code = await runAgent(config, identity, logger, { graceful: graceful.signal, forced: forced.signal });
  process.exit(code);
}

const program = new Command()
  .name('hearth-agent')
  .description('Runs Hearth jobs on this machine for a Hearth control plane.')
  .version(AGENT_VERSION)
  .showHelpAfterError();

program
  .command('join')
  .description('enroll this machine with a control plane (once)')
  .requiredOption('--url <url>', 'control plane base URL, e.g. https://hearth.example.com')
  .option('--token <token>', 'one-time join token (or env HEARTH_AGENT_JOIN_TOKEN, kept out of ps)')
  .option('--data-dir <dir>', 'where the identity, logs and work dirs live (env HEARTH_AGENT_DATA_DIR)')
  .option('--label <key=value>', 'a label for scheduling; repeatable', collect, [])
  .option('--force', 'join again even if this data dir has already joined')
  .option(
    '--allow-plaintext',
    'accept an http:// URL of another machine (env HEARTH_AGENT_ALLOW_PLAINTEXT=true); only on a network you trust',
  )
  .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (env HEARTH_AGENT_LOG_LEVEL)')
  .action((flags: JoinFlags) => joinCommand(flags).catch(fail));

program
  .command('run')
  .description('run the agent daemon')
  .option('--data-dir <dir>', 'the data dir written by join (env HEARTH_AGENT_DATA_DIR)')
  .option('--max-jobs <n>', 'jobs run at once, at most (env HEARTH_AGENT_MAX_JOBS; default 2)')
  .option('--nats-url <url>', 'NATS server to use instead of the ones given at join')
  .option(
    '--allow-plaintext',
    'reach NATS servers on other machines without TLS when they offer none (env HEARTH_AGENT_ALLOW_PLAINTEXT=true); ' +
      'by default TLS is required beyond this machine',
  )
  .option('--drain-seconds <s>', 'on stop, how long running jobs may finish (default 30)')
  .option(
    '--telemetry-interval <s>',
    'seconds between telemetry samples, 1 to 60 (env HEARTH_AGENT_TELEMETRY_INTERVAL; default 5)',
  )
  .option(
    '--telemetry-buffer <n>',
    'samples kept while the control plane is unreachable; the oldest go first (env HEARTH_AGENT_TELEMETRY_BUFFER; default 8640)',
  )
  .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (env HEARTH_AGENT_LOG_LEVEL)')
  .option(
    '--policy <file>',
    'the local policy: data roots, artifact root, serve address (default <data-dir>/policy.json; ' +
      'when that is missing nothing may be read or written)',
  )
  .option(
    '--serve-host <host>',
    "address the inference server listens on (overrides the policy's serve.host)",
  )
  .option(
    '--serve-port <port>',
    "port of the inference server (overrides the policy's serve.port; 0: any free port)",
  )
  .option(
    '--serve-threads <n>',
    "onnxruntime intra-op threads per served model (overrides the policy's serve.threads; default: one per core)",
  )
  .option(
    '--serve-workers <n>',
    "processes answering inference requests (overrides the policy's serve.workers; default 1, the agent's own)",
  )
  .option(
    '--metrics-host <host>',
    "address of the Prometheus endpoint (overrides the policy's metrics.host; default 127.0.0.1)",
  )
  .option(
    '--metrics-port <port>',
    "serve Prometheus metrics at GET /metrics on this port (overrides the policy's metrics.port; " +
      'default: no endpoint; 0: any free port, logged)',
  )
  .action((flags: RunFlags) => runCommand(flags).catch(fail));

await program.parseAsync(process.argv);
