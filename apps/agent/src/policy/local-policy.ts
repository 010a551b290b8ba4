/**
 * The customer's local policy: a JSON file that the customer's IT writes on the agent's machine
 * (`<data-dir>/policy.json` by default). It says where datasets may be read from, where models may
 * be written, and whether command jobs may run, which programs and with what environment. Parsed once,
 * at start, into a frozen, typed object; a missing file means no data roots (so train jobs are
 * refused) and no artifact root.
 * A command job runs as the agent's user, so the file must not be writable by that user for the
 * policy to hold against such jobs (README: installing the agent).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

export const POLICY_FILE_NAME = 'policy.json';
export const DEFAULT_MAX_DATASET_BYTES = 256 * 1024 * 1024;
export const MAX_DATASET_BYTES = 2 ** 29 - 24;
/** The inference server's limits unless the policy sets them (oip-server.ts says why each exists). */
export const DEFAULT_SERVE_LIMITS = Object.freeze({
  maxBodyBytes: 32 * 1024 ** 2,
  maxInFlightBytes: null,
  maxElements: 2 ** 25,
  maxStringElements: 2 ** 20,
  maxConnections: 1024,
  maxConnectionsPerAddress: null,
});
/**
 * The largest body limit taken: a JSON body may be read as one string, and V8's strings stop at
 * 2^29 - 24 characters (the JSON response's limit, 4 × the body's, is capped there too).
 */
export const MAX_SERVE_BODY_BYTES = 256 * 1024 ** 2;
export const DEFAULT_SERVE = Object.freeze({
  host: '127.0.0.1',
  port: 8600,
  threads: null,
  workers: 1,
  tls: null,
  limits: DEFAULT_SERVE_LIMITS,
});
export const DEFAULT_METRICS = Object.freeze({ host: '127.0.0.1', port: null, tls: null });
/**
 * Environment variables a command job may not set unless the policy says otherwise: those that make
 * a program load or run other code than it was started as (the dynamic loader's, interpreters'
 * start-up hooks), PATH (the agent finds the program itself, on its own PATH; a job's PATH would
 * pick the programs an allowed one runs), the GPU visibility variables (the agent assigns GPUs), and
 * the agent's own HEARTH_*. A trailing `*` matches any suffix.
 */
export const DEFAULT_ENV_DENY = Object.freeze([
  'LD_*',
  'DYLD_*',
  'GCONV_PATH',
  'PATH',
  'BASH_ENV',
  'ENV',
  'NODE_OPTIONS',
  'PYTHONSTARTUP',
  'PERL5OPT',
  'RUBYOPT',
  'JAVA_TOOL_OPTIONS',
  '_JAVA_OPTIONS',
  'JDK_JAVA_OPTIONS',
  'CUDA_VISIBLE_DEVICES',
  'HIP_VISIBLE_DEVICES',
  'ROCR_VISIBLE_DEVICES',
  'NVIDIA_VISIBLE_DEVICES',
  'GPU_DEVICE_ORDINAL',
  'HEARTH_*',
]);
/** Full job logs: kept 30 days, and 10 GiB in all (oldest removed first). */
export const DEFAULT_LOGS = Object.freeze({ keepDays: 30, maxTotalBytes: 10 * 1024 ** 3 });

/** Where the inference server listens, how many processes serve, and how many threads each model may use. */
export interface ServePolicy {
  readonly host: string;
  readonly port: number;
  /**
   * onnxruntime's intra-op threads per loaded model; null: onnxruntime's default (one per core).
   * Small tabular models answer as fast on one thread, and idle pool threads spin, taking CPU
   * from jobs on a shared node.
   */
  readonly threads: number | null;
  /**
   * Processes answering inference requests: 1, the agent's own; more, that many serve workers,
   * each with its own session of every model (memory × workers), sharing the port. One Node
   * process answers HTTP on one core; a busy endpoint on a many-core node wants about one per core.
   */
  readonly workers: number;
  /** HTTPS (and, with a client CA, mutual TLS) for the inference server; null: plain HTTP. */
  readonly tls: ServeTlsPolicy | null;
  readonly limits: ServeLimitsPolicy;
}

/**
 * What one inference request, and all of them together, may make the inference server hold. Each
 * worker applies them on its own. Beyond them a client gets 413 (a body or tensor too large) or 503
 * with Retry-After (too many bytes in flight); connections beyond the cap are closed at once.
 */
export interface ServeLimitsPolicy {
  /** The largest request body, after decompression; at most MAX_SERVE_BODY_BYTES. */
  readonly maxBodyBytes: number;
  /**
   * Request and response bytes held at once by the requests being answered; at least
   * maxBodyBytes. null: 2 × maxBodyBytes.
   */
  readonly maxInFlightBytes: number | null;
  /** Elements of one input tensor. */
  readonly maxElements: number;
  /** Elements of one BYTES input tensor (each a JavaScript string while the request is read). */
  readonly maxStringElements: number;
  /** Connections open at once. */
  readonly maxConnections: number;
  /**
   * Connections open at once from one client address; null: no cap of its own. Off by default:
   * behind a load balancer or an ingress every client has its address.
   */
  readonly maxConnectionsPerAddress: number | null;
}

/**
 * The inference server's certificate and key (PEM files on the agent's machine, read by the agent
 * and re-read when they change, so a rotated certificate is served without a restart), and the CA
 * whose client certificates it requires, if any. Inference requests carry the customer's data.
 */
export interface ServeTlsPolicy {
  /** The server certificate, PEM; intermediates after it. */
  readonly certFile: string;
  /** Its private key, PEM, unencrypted (readable by the agent only). */
  readonly keyFile: string;
  /** null: any client may connect; else only clients with a certificate this CA (PEM) issued. */
  readonly clientCaFile: string | null;
  /**
   * Certificate revocation lists (PEM) of the client CA: a client certificate listed is refused.
   * Only with clientCaFile; null or absent: none. Re-read when it changes, as the others are.
   */
  readonly crlFile?: string | null;
}

/**
 * The agent's Prometheus endpoint (GET /metrics) for the customer's own monitoring. Off unless a
 * port is set: a new listening port is IT's decision. It answers on the customer's network only
 * and sends nothing anywhere; its numbers never include a request, a dataset or a job's output.
 */
export interface MetricsPolicy {
  readonly host: string;
  /** null: no endpoint; 0: any free port (logged at start). */
  readonly port: number | null;
  /** HTTPS (and, with a client CA, mutual TLS: a scraper's certificate) as serve.tls; null: HTTP. */
  readonly tls: ServeTlsPolicy | null;
}

/**
 * What command jobs may do. They run as the agent's user: dataRoots and artifactRoot do not confine
 * them (those bound what train, batch_predict and serve touch), so this block is how IT narrows them.
 */
export interface CommandPolicy {
  /** Whether `command` jobs may run at all. */
  readonly enabled: boolean;
  /** The programs a command job may start; null: any program the agent's user may run. */
  readonly executables: readonly ExecutableRule[] | null;
  /** Environment variables a job may set: null: any not denied; else only those matching. */
  readonly envAllow: readonly string[] | null;
  /** Environment variables a job may not set (patterns; a trailing `*` matches any suffix). */
  readonly envDeny: readonly string[];
  /**
   * Whether the job's output goes up to the control plane as a bounded, rate-limited tail (the
   * full log stays on this machine either way); false: only a line saying where the log is.
   */
  readonly sendLogTail: boolean;
  /** Run each command job in a bubblewrap sandbox (sandbox.ts); null: as a plain process. */
  readonly sandbox: SandboxPolicy | null;
}

/**
 * The sandbox a command job runs in: the whole file system read-only, the agent's data dir hidden
 * but for the job's own working directory, its own /tmp, process and IPC namespaces (it sees no
 * other process, and nothing it starts outlives it), the artifact root writable.
 */
export interface SandboxPolicy {
  /** false: the job has no network at all (only its own loopback). */
  readonly network: boolean;
  /** More absolute paths the job must not see (e.g. /home, /srv/secrets): each is emptied for it. */
  readonly hidePaths: readonly string[];
  /**
   * Host devices every job gets beside a minimal /dev (null, zero, random, tty, shm, pts…) and
   * its own GPUs' device files (gpu-devices.ts): files or directories under /dev, e.g.
   * /dev/infiniband or /dev/fuse. "/dev" gives every device, and with it every GPU.
   */
  readonly devices: readonly string[];
}

/**
 * A program command jobs may start: an absolute file, or (path ending in `/`) any file under that
 * directory; with argsPrefix, only with those first arguments (e.g. one script for an interpreter).
 */
export interface ExecutableRule {
  readonly path: string;
  readonly argsPrefix: readonly string[];
}

export interface LocalPolicy {
  /** The file the policy was read from (or would have been, when it is missing): for messages. */
  readonly file: string;
  /** Absolute directories datasets may be read from. */
  readonly dataRoots: readonly string[];
  /** Absolute directory models and predictions are written to; null: nothing may be written. */
  readonly artifactRoot: string | null;
  readonly maxDatasetBytes: number;
  readonly commands: CommandPolicy;
  readonly serve: ServePolicy;
  readonly metrics: MetricsPolicy;
  /** How long, and how much of, the full job logs in the data dir are kept (see log-retention.ts). */
  readonly logs: { readonly keepDays: number; readonly maxTotalBytes: number };
}

/** A policy problem the user can act on; the message says what to change, and is shown as is. */
export class PolicyError extends Error {
  override readonly name = 'PolicyError';
}

const absolutePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => path.isAbsolute(p), 'must be an absolute path')
  .refine((p) => !p.includes('\0'), 'must not contain a NUL character');

const TlsBlock = z
  .object({
    certFile: absolutePath,
    keyFile: absolutePath,
    clientCaFile: absolutePath.nullable().default(null),
    crlFile: absolutePath.nullable().default(null),
  })
  .strict()
  .refine((t) => t.crlFile === null || t.clientCaFile !== null, {
    message: 'a revocation list is for client certificates: it needs clientCaFile',
    path: ['crlFile'],
  });

const count = (min: number, max: number) => z.number().int().min(min).max(max);
const ServeLimitsBlock = z
  .object({
    maxBodyBytes: count(1024, MAX_SERVE_BODY_BYTES).default(DEFAULT_SERVE_LIMITS.maxBodyBytes),
    maxInFlightBytes: count(1024, Number.MAX_SAFE_INTEGER)
      .nullable()
      .default(DEFAULT_SERVE_LIMITS.maxInFlightBytes),
    maxElements: count(1, 2 ** 31 - 1).default(DEFAULT_SERVE_LIMITS.maxElements),
    maxStringElements: count(1, 2 ** 31 - 1).default(DEFAULT_SERVE_LIMITS.maxStringElements),
    maxConnections: count(1, 65_536).default(DEFAULT_SERVE_LIMITS.maxConnections),
    maxConnectionsPerAddress: count(1, 65_536)
      .nullable()
      .default(DEFAULT_SERVE_LIMITS.maxConnectionsPerAddress),
  })
  .strict()
  .refine((l) => l.maxInFlightBytes === null || l.maxInFlightBytes >= l.maxBodyBytes, {
    message: 'must be at least maxBodyBytes: a request of the largest size could never be answered',
    path: ['maxInFlightBytes'],
  });

/** An environment variable name, or a prefix of names ending in `*`. */
const envPattern = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*\*?$|^\*$/, 'must be a variable name, or a prefix ending in *');

const ExecutableEntry = z.union([
  absolutePath,
  z.object({ path: absolutePath, argsPrefix: z.array(z.string().max(4096)).max(64).default([]) }).strict(),
]);

const CommandsBlock = z
  .object({
    // Undefined, not defaulted: the older top-level commandJobs may say it (commandsEnabled).
    enabled: z.boolean().optional(),
    executables: z.array(ExecutableEntry).max(256).nullable().default(null),
    envAllow: z.array(envPattern).max(256).nullable().default(null),
    envDeny: z
      .array(envPattern)
      .max(256)
      .default([...DEFAULT_ENV_DENY]),
    sendLogTail: z.boolean().default(true),
    sandbox: z
      .object({
        network: z.boolean().default(true),
        hidePaths: z.array(absolutePath).max(64).default([]),
        devices: z
          .array(
            absolutePath.refine(
              (p) => path.normalize(p).replace(/\/$/, '') === '/dev' || path.normalize(p).startsWith('/dev/'),
              'must be /dev or a path under it',
            ),
          )
          .max(64)
          .default([]),
      })
      .strict()
      .nullable()
      .default(null),
  })
  .strict();

const PolicyFile = z
  .object({
    dataRoots: z.array(absolutePath).max(64).default([]),
    artifactRoot: absolutePath.nullable().default(null),
    // A dataset is read whole, as one string: V8's longest is 2^29 - 24 characters (Node 20).
    maxDatasetBytes: z
      .number()
      .int()
      .positive()
      .max(
        MAX_DATASET_BYTES,
        `at most ${MAX_DATASET_BYTES} (about 512 MiB): a dataset is read into memory whole`,
      )
      .default(DEFAULT_MAX_DATASET_BYTES),
    commands: CommandsBlock.default(CommandsBlock.parse({})),
    // The first form of commands.enabled, still read: files written for earlier agents keep working.
    commandJobs: z.boolean().optional(),
    serve: z
      .object({
        host: z.string().min(1).max(255).default(DEFAULT_SERVE.host),
        port: z.number().int().min(1).max(65_535).default(DEFAULT_SERVE.port),
        threads: z.number().int().min(1).max(1024).nullable().default(DEFAULT_SERVE.threads),
        workers: z.number().int().min(1).max(256).default(DEFAULT_SERVE.workers),
        tls: TlsBlock.nullable().default(DEFAULT_SERVE.tls),
        limits: ServeLimitsBlock.default({ ...DEFAULT_SERVE_LIMITS }),
      })
      .strict()
      .default({ ...DEFAULT_SERVE }),
    metrics: z
      .object({
        host: z.string().min(1).max(255).default(DEFAULT_METRICS.host),
        port: z.number().int().min(0).max(65_535).nullable().default(DEFAULT_METRICS.port),
        tls: TlsBlock.nullable().default(DEFAULT_METRICS.tls),
      })
      .strict()
      .default({ ...DEFAULT_METRICS }),
    logs: z
      .object({
        keepDays: z.number().int().min(1).max(3650).default(DEFAULT_LOGS.keepDays),
        maxTotalBytes: z
          .number()
          .int()
          .min(1024 ** 2, 'at least 1 MiB')
          .max(Number.MAX_SAFE_INTEGER)
          .default(DEFAULT_LOGS.maxTotalBytes),
      })
      .strict()
      .default({ ...DEFAULT_LOGS }),
  })
  .strict();

/** Reads `<dataDir>/policy.json` (or `file`); a missing file gives the safe defaults. */
export function loadLocalPolicy(dataDir: string, file = path.join(dataDir, POLICY_FILE_NAME)): LocalPolicy {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return parseLocalPolicy({}, file);
    throw new PolicyError(`cannot read the local policy ${file}: ${(err as NodeJS.ErrnoException).code}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new PolicyError(`the local policy ${file} is not valid JSON`);
  }
  return parseLocalPolicy(json, file);
}

function tlsPolicy(block: z.infer<typeof TlsBlock> | null): ServeTlsPolicy | null {
  if (block === null) return null;
  return Object.freeze({
    certFile: path.resolve(block.certFile),
    keyFile: path.resolve(block.keyFile),
    clientCaFile: block.clientCaFile === null ? null : path.resolve(block.clientCaFile),
    crlFile: block.crlFile === null ? null : path.resolve(block.crlFile),
  });
}

/** Validates a parsed policy document; `file` only names it in messages. */
export function parseLocalPolicy(json: unknown, file: string): LocalPolicy {
  const parsed = PolicyFile.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.length > 0 ? issue.path.join('.') : '(the whole file)';
    throw new PolicyError(`the local policy ${file} is invalid at ${where}: ${issue.message}`);
  }
  const p = parsed.data;
  const enabled = commandsEnabled(p.commands.enabled, p.commandJobs, file);
  return Object.freeze({
    file,
    dataRoots: Object.freeze(p.dataRoots.map((r) => path.resolve(r))),
    artifactRoot: p.artifactRoot === null ? null : path.resolve(p.artifactRoot),
    maxDatasetBytes: p.maxDatasetBytes,
    commands: Object.freeze({
      enabled,
      executables:
        p.commands.executables === null ? null : Object.freeze(p.commands.executables.map(executableRule)),
      envAllow: p.commands.envAllow === null ? null : Object.freeze([...p.commands.envAllow]),
      envDeny: Object.freeze([...p.commands.envDeny]),
      sendLogTail: p.commands.sendLogTail,
      sandbox:
        p.commands.sandbox === null
          ? null
          : Object.freeze({
              network: p.commands.sandbox.network,
              hidePaths: Object.freeze(p.commands.sandbox.hidePaths.map((h) => path.resolve(h))),
              devices: Object.freeze(p.commands.sandbox.devices.map((d) => path.resolve(d))),
            }),
    }),
    serve: Object.freeze({
      ...p.serve,
      tls: tlsPolicy(p.serve.tls),
      limits: Object.freeze({ ...p.serve.limits }),
    }),
    metrics: Object.freeze({ ...p.metrics, tls: tlsPolicy(p.metrics.tls) }),
    logs: Object.freeze({ ...p.logs }),
  });
}

/** `commands.enabled`, or the older top-level `commandJobs`; both set and different is a mistake. */
function commandsEnabled(enabled: boolean | undefined, legacy: boolean | undefined, file: string): boolean {
  if (enabled !== undefined && legacy !== undefined && enabled !== legacy) {
    throw new PolicyError(
      `the local policy ${file} sets both "commandJobs" and "commands.enabled", differently: keep "commands.enabled"`,
    );
  }
  return enabled ?? legacy ?? true;
}

function executableRule(entry: z.infer<typeof ExecutableEntry>): ExecutableRule {
  const rule = typeof entry === 'string' ? { path: entry, argsPrefix: [] } : entry;
  // A trailing slash means "anything under": path.resolve would drop it.
  const dir = rule.path.endsWith('/');
  const resolved = path.resolve(rule.path);
  return Object.freeze({
    path: dir && resolved !== '/' ? `${resolved}/` : resolved,
    argsPrefix: Object.freeze([...rule.argsPrefix]),
  });
}

export interface ResolvedDataset {
  /** The real path (symbolic links resolved), inside a data root. */
  path: string;
  sizeBytes: number;
}

/**
 * Turns a dataset URI into a file this agent may read. Only file:// URIs; the path must lie inside
 * a data root both as written and once symbolic links are resolved, so neither `..` nor a link
 * can lead out. A path outside the roots is refused before the file system is asked about it.
 */
export function resolveDatasetUri(uri: string, policy: LocalPolicy): ResolvedDataset {
  const filePath = filePathOf(uri, 'dataset');
  if (policy.dataRoots.length === 0) {
    throw new PolicyError(
      `no data roots are configured on this agent, so no dataset may be read: add the directory ` +
        `holding your data to "dataRoots" in ${policy.file}`,
    );
  }
  const roots = policy.dataRoots.map((root) => ({ root, real: realpathOrNull(root) }));
  const outside = () =>
    new PolicyError(
      `the dataset ${uri} is outside the data roots allowed on this agent (${policy.dataRoots.join(', ')}); ` +
        `move it under one of them or add its directory to "dataRoots" in ${policy.file}`,
    );
  if (
    !roots.some(({ root, real }) => isInside(filePath, root) || (real !== null && isInside(filePath, real)))
  ) {
    throw outside();
  }
  let real: string;
  try {
    real = fs.realpathSync(filePath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new PolicyError(`the dataset ${uri} does not exist`);
    throw new PolicyError(`the dataset ${uri} cannot be read (${code ?? 'error'})`);
  }
  if (!roots.some((r) => r.real !== null && isInside(real, r.real))) {
    throw new PolicyError(
      `the dataset ${uri} is a symbolic link (or under one) that leads outside the data roots allowed on ` +
        `this agent (${policy.dataRoots.join(', ')})`,
    );
  }
  const stat = fs.statSync(real);
  if (!stat.isFile()) throw new PolicyError(`the dataset ${uri} is not a regular file`);
  return { path: real, sizeBytes: stat.size };
}

export interface ResolvedModel {
  /** The real path (symbolic links resolved), inside the artifact root. */
  path: string;
  sizeBytes: number;
}

/**
 * Turns a model URI (a `serve` or `batch_predict` job's ModelRef) into a file this agent may load:
 * a file:// URI inside the artifact root, as written and once symbolic links are resolved.
 */
export function resolveModelUri(uri: string, policy: LocalPolicy): ResolvedModel {
  const filePath = filePathOf(uri, 'model');
  if (policy.artifactRoot === null) {
    throw new PolicyError(
      `no artifact root is configured on this agent, so no model may be loaded: set "artifactRoot" to the ` +
        `directory holding your models in ${policy.file}`,
    );
  }
  const root = policy.artifactRoot;
  const realRoot = realpathOrNull(root);
  if (!isInside(filePath, root) && !(realRoot !== null && isInside(filePath, realRoot))) {
    throw new PolicyError(
      `the model ${uri} is outside the artifact root of this agent (${root}); models are loaded only ` +
        `from under "artifactRoot" in ${policy.file}`,
    );
  }
  let real: string;
  try {
    real = fs.realpathSync(filePath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new PolicyError(`the model ${uri} does not exist`);
    throw new PolicyError(`the model ${uri} cannot be read (${code ?? 'error'})`);
  }
  if (realRoot === null || !isInside(real, realRoot)) {
    throw new PolicyError(
      `the model ${uri} is a symbolic link (or under one) that leads outside the artifact root of this ` +
        `agent (${root})`,
    );
  }
  const stat = fs.statSync(real);
  if (!stat.isFile()) throw new PolicyError(`the model ${uri} is not a regular file`);
  return { path: real, sizeBytes: stat.size };
}

const ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * The path of an artifact of one job attempt: `<artifactRoot>/<jobId>/<attemptId>/<fileName>`.
 * Creates the directories (0700) as needed.
 */
export function artifactPathFor(
  policy: LocalPolicy,
  jobId: string,
  attemptId: string,
  fileName: string,
): string {
  if (policy.artifactRoot === null) {
    throw new PolicyError(
      `no artifact root is configured on this agent, so models cannot be saved: set "artifactRoot" to a ` +
        `directory in ${policy.file}`,
    );
  }
  if (!ID.test(jobId) || !ID.test(attemptId))
    throw new PolicyError('invalid job or attempt id for an artifact path');
  if (!FILE_NAME.test(fileName) || fileName.includes('..')) {
    throw new PolicyError(`invalid artifact file name ${JSON.stringify(fileName)}`);
  }
  let dir = policy.artifactRoot;
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // One level at a time, never through a link: a link planted in the root must not send files elsewhere.
    for (const part of [jobId, attemptId]) {
      dir = path.join(dir, part);
      try {
        fs.mkdirSync(dir, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const stat = fs.lstatSync(dir);
      if (stat.isSymbolicLink() || !stat.isDirectory()) {
        throw new PolicyError(`${dir} is not a plain directory inside the artifact root (a symbolic link?)`);
      }
    }
  } catch (err) {
    if (err instanceof PolicyError) throw err;
    throw new PolicyError(
      `cannot create ${dir} under the artifact root (${(err as NodeJS.ErrnoException).code ?? 'error'}): ` +
        `check "artifactRoot" in ${policy.file} and the agent's permissions there`,
    );
  }
  return path.join(dir, fileName);
}

function filePathOf(uri: string, what: 'dataset' | 'model'): string {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new PolicyError(`the ${what} location is not a valid URI: ${JSON.stringify(uri.slice(0, 200))}`);
  }
  if (url.protocol !== 'file:') {
    const where = what === 'dataset' ? 'under its data roots' : 'under its artifact root';
    throw new PolicyError(
      `unsupported ${what} URI scheme "${url.protocol.replace(/:$/, '')}": this agent reads ${what}s ` +
        `from file:// URIs ${where} only`,
    );
  }
  if (url.hostname !== '' && url.hostname !== 'localhost') {
    throw new PolicyError(`the ${what} URI ${uri} names a remote host; use file:///absolute/path`);
  }
  if (url.search !== '' || url.hash !== '') {
    throw new PolicyError(`the ${what} URI ${uri} must not have a query or fragment`);
  }
  let filePath: string;
  try {
    filePath = fileURLToPath(url);
  } catch {
    throw new PolicyError(`the ${what} URI ${uri} is not a valid file path`);
  }
  // The URL parser already removed `.` and `..` segments; resolving again is only belt and braces.
  if (filePath.includes('\0')) throw new PolicyError(`the ${what} URI ${uri} is not a valid file path`);
  return path.resolve(filePath);
}

export function realpathOrNull(p: string): string | null {
  try {
    return fs.realpathSync(p);
  } catch {
    return null;
  }
}

/** True when `p` is strictly inside `dir` (both absolute and normalised). */
export function isInside(p: string, dir: string): boolean {
  const rel = path.relative(dir, p);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}
