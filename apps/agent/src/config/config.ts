/**
 * The agent's configuration: CLI flags, then the optional environment, parsed once into frozen,
 * typed objects. This folder is the only place that reads process.env.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isLoopbackHost, parseNatsServers } from '@hearth/contracts';
import { PolicyError, loadLocalPolicy, type LocalPolicy } from '../policy/local-policy.js';
import { ServeTlsError, loadServeTls } from '../serve/serve-tls.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The minimal environment every job starts from (the job's own env is added on top). */
export interface JobBaseEnv {
  readonly PATH: string;
  readonly TMPDIR: string;
  readonly LANG?: string;
}

export interface RunConfig {
  readonly dataDir: string;
  readonly maxJobs: number;
  /** Overrides the NATS servers from agent.json when set. */
  readonly natsUrl: string | null;
  /**
   * Whether NATS servers beyond this machine may be reached in plaintext (--allow-plaintext). By
   * default the connection to them must be TLS (a server that offers none is refused).
   */
  readonly allowPlaintext: boolean;
  readonly drainSeconds: number;
  /** Telemetry: seconds between samples, and how many samples wait while they cannot be sent. */
  readonly telemetry: { readonly intervalSeconds: number; readonly bufferSamples: number };
  readonly logLevel: LogLevel;
  readonly jobBaseEnv: JobBaseEnv;
  /**
   * The customer's local policy, read once at start (--policy, default <data-dir>/policy.json).
   * Its `serve` and `metrics` settings are the effective ones: --serve-host/--serve-port/--serve-threads/
   * --serve-workers and --metrics-host/--metrics-port, when given, win.
   */
  readonly policy: LocalPolicy;
}

export interface JoinConfig {
  readonly url: string;
  /** Secret: never logged. */
  readonly token: string;
  readonly dataDir: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly force: boolean;
  readonly logLevel: LogLevel;
  /** Whether an http:// URL of a host beyond this machine is accepted (--allow-plaintext). */
  readonly allowPlaintext: boolean;
}

/** A configuration the user must fix; its message is shown as is. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export interface RunFlags {
  dataDir?: string;
  maxJobs?: string;
  natsUrl?: string;
  allowPlaintext?: boolean;
  drainSeconds?: string;
  telemetryInterval?: string;
  telemetryBuffer?: string;
  logLevel?: string;
  policy?: string;
  serveHost?: string;
  servePort?: string;
  serveThreads?: string;
  serveWorkers?: string;
  metricsHost?: string;
  metricsPort?: string;
}

export interface JoinFlags {
  url?: string;
  token?: string;
  dataDir?: string;
  label?: string[];
  force?: boolean;
  logLevel?: string;
  allowPlaintext?: boolean;
}

type Env = Readonly<Record<string, string | undefined>>;

export const DEFAULT_MAX_JOBS = 2;
export const DEFAULT_DRAIN_SECONDS = 30;
export const DEFAULT_TELEMETRY_INTERVAL_SECONDS = 5;
/** 12 hours of samples at the default interval (an 8-GPU host's sample is about 2 KiB in memory). */
export const DEFAULT_TELEMETRY_BUFFER_SAMPLES = 8640;

export function parseRunConfig(flags: RunFlags, env: Env = process.env): RunConfig {
  const dir = dataDir(flags.dataDir, env);
  const config: RunConfig = {
    dataDir: dir,
    maxJobs: integer('--max-jobs', flags.maxJobs ?? env.HEARTH_AGENT_MAX_JOBS, DEFAULT_MAX_JOBS, 1, 1024),
    natsUrl: flags.natsUrl ? natsUrl(flags.natsUrl) : null,
    allowPlaintext: allowPlaintext(flags.allowPlaintext, env),
    drainSeconds: integer('--drain-seconds', flags.drainSeconds, DEFAULT_DRAIN_SECONDS, 0, 24 * 3600),
    telemetry: Object.freeze({
      intervalSeconds: integer(
        '--telemetry-interval',
        flags.telemetryInterval ?? env.HEARTH_AGENT_TELEMETRY_INTERVAL,
        DEFAULT_TELEMETRY_INTERVAL_SECONDS,
        1,
        60,
      ),
      bufferSamples: integer(
        '--telemetry-buffer',
        flags.telemetryBuffer ?? env.HEARTH_AGENT_TELEMETRY_BUFFER,
        DEFAULT_TELEMETRY_BUFFER_SAMPLES,
        1,
        1_000_000,
      ),
    }),
    logLevel: logLevel(flags.logLevel ?? env.HEARTH_AGENT_LOG_LEVEL),
    jobBaseEnv: Object.freeze({
      PATH: env.PATH || '/usr/local/bin:/usr/bin:/bin',
      TMPDIR: env.TMPDIR || os.tmpdir(),
      ...(env.LANG ? { LANG: env.LANG } : {}),
    }),
    policy: localPolicy(dir, flags),
  };
  return Object.freeze(config);
}

export function parseJoinConfig(flags: JoinFlags, env: Env = process.env): JoinConfig {
  const token = flags.token ?? env.HEARTH_AGENT_JOIN_TOKEN;
  if (!token) throw new ConfigError('a join token is required (--token or HEARTH_AGENT_JOIN_TOKEN)');
  const plaintext = allowPlaintext(flags.allowPlaintext, env);
  const config: JoinConfig = {
    url: controlPlaneUrl(flags.url, plaintext),
    token,
    dataDir: dataDir(flags.dataDir, env),
    labels: Object.freeze(labels(flags.label ?? [])),
    force: flags.force === true,
    logLevel: logLevel(flags.logLevel ?? env.HEARTH_AGENT_LOG_LEVEL),
    allowPlaintext: plaintext,
  };
  return Object.freeze(config);
}

/** --allow-plaintext, or HEARTH_AGENT_ALLOW_PLAINTEXT=true (or 1) for a service manager's unit. */
function allowPlaintext(flag: boolean | undefined, env: Env): boolean {
  if (flag === true) return true;
  const raw = env.HEARTH_AGENT_ALLOW_PLAINTEXT;
  if (raw === undefined || raw === '' || raw === 'false' || raw === '0') return false;
  if (raw === 'true' || raw === '1') return true;
  throw new ConfigError(`HEARTH_AGENT_ALLOW_PLAINTEXT must be true or false, got ${JSON.stringify(raw)}`);
}

function dataDir(flag: string | undefined, env: Env): string {
  const value = flag ?? env.HEARTH_AGENT_DATA_DIR;
  if (!value) throw new ConfigError('a data dir is required (--data-dir or HEARTH_AGENT_DATA_DIR)');
  return path.resolve(value);
}

/** A malformed policy file stops the agent at start; a missing one gives the safe defaults. */
function localPolicy(dataDirPath: string, flags: RunFlags): LocalPolicy {
  const file = flags.policy ? path.resolve(flags.policy) : undefined;
  // A file named with --policy must exist: a typo must not quietly mean "nothing allowed".
  if (file !== undefined && !fs.existsSync(file)) {
    throw new ConfigError(`--policy: the local policy ${file} does not exist`);
  }
  let policy: LocalPolicy;
  try {
    policy = loadLocalPolicy(dataDirPath, file);
  } catch (err) {
    if (err instanceof PolicyError) throw new ConfigError(err.message);
    throw err;
  }
  // The inference server starts with the first serve job; its TLS files (and the metrics
  // endpoint's) are checked now, so a mistake stops the agent where IT installs it, not a
  // deployment later.
  for (const [where, block] of [
    ['serve.tls', policy.serve.tls],
    ['metrics.tls', policy.metrics.tls],
  ] as const) {
    if (!block) continue;
    try {
      loadServeTls(block, new Date(), where);
    } catch (err) {
      if (err instanceof ServeTlsError)
        throw new ConfigError(`${err.message} (the local policy ${policy.file})`);
      throw err;
    }
  }
  const serveFlags = [flags.serveHost, flags.servePort, flags.serveThreads, flags.serveWorkers];
  const serve = serveFlags.every((f) => f === undefined)
    ? policy.serve
    : Object.freeze({
        host: flags.serveHost === undefined ? policy.serve.host : hostFlag('--serve-host', flags.serveHost),
        // 0: any free port, chosen when the inference server starts (the serve.ready event reports it).
        port: integer('--serve-port', flags.servePort, policy.serve.port, 0, 65_535),
        threads:
          flags.serveThreads === undefined
            ? policy.serve.threads
            : integer('--serve-threads', flags.serveThreads, 1, 1, 1024),
        workers: integer('--serve-workers', flags.serveWorkers, policy.serve.workers, 1, 256),
        tls: policy.serve.tls,
        limits: policy.serve.limits,
      });
  const metrics =
    flags.metricsHost === undefined && flags.metricsPort === undefined
      ? policy.metrics
      : Object.freeze({
          host:
            flags.metricsHost === undefined
              ? policy.metrics.host
              : hostFlag('--metrics-host', flags.metricsHost),
          // 0: any free port (logged); a port given only by --metrics-host stays the policy's.
          port:
            flags.metricsPort === undefined || flags.metricsPort === ''
              ? policy.metrics.port
              : integer('--metrics-port', flags.metricsPort, 0, 0, 65_535),
          tls: policy.metrics.tls,
        });
  return serve === policy.serve && metrics === policy.metrics
    ? policy
    : Object.freeze({ ...policy, serve, metrics });
}

function hostFlag(name: string, raw: string): string {
  if (!/^[A-Za-z0-9.:_-]{1,255}$/.test(raw)) {
    throw new ConfigError(`${name} must be a host name or an IP address, got ${JSON.stringify(raw)}`);
  }
  return raw;
}

function integer(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function logLevel(raw: string | undefined): LogLevel {
  if (raw === undefined || raw === '') return 'info';
  const level = LOG_LEVELS.find((l) => l === raw);
  if (!level)
    throw new ConfigError(`log level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(raw)}`);
  return level;
}

function controlPlaneUrl(raw: string | undefined, plaintext: boolean): string {
  if (!raw) throw new ConfigError('--url (the control plane base URL) is required');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`--url is not a URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(`--url must be http(s), got ${url.protocol}`);
  }
  // The join token and the NATS credentials issued for it travel on this request: whoever reads
  // them can enroll as this machine, and whoever answers can point the agent at their own NATS.
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname) && !plaintext) {
    throw new ConfigError(
      `--url ${url.origin} is plain HTTP to another machine: the join token and the credentials ` +
        'issued for it would cross the network unencrypted, and anyone on the way could answer in ' +
        "the control plane's place. Use https://, or pass --allow-plaintext on a network you trust " +
        '(a lab, a compose network)',
    );
  }
  return url.toString().replace(/\/+$/, '');
}

function natsUrl(raw: string): string {
  const parsed = parseNatsServers(raw);
  if ('error' in parsed) throw new ConfigError(`--nats-url: ${parsed.error}`);
  return parsed.servers.join(',');
}

function labels(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--label must be key=value, got ${JSON.stringify(pair)}`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
