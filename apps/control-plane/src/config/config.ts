/**
 * The control plane's configuration, parsed once at boot from the environment into a typed, frozen
 * object. Nothing else reads process.env. Secrets are marked so the logger redacts them.
 */
import { parseNatsServers } from '@hearth/contracts';
import { z } from 'zod';

const seconds = (fallback: number) => z.coerce.number().positive().default(fallback);
const bool = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0'])
    .default(fallback ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1');

/** Comma-separated NATS servers (see parseNatsServers), normalised; empty is unset. */
const natsServers = z.preprocess(
  (value) => (value === '' ? undefined : value),
  z
    .string()
    .transform((raw, ctx) => {
      const parsed = parseNatsServers(raw);
      if ('servers' in parsed) return parsed.servers.join(',');
      ctx.addIssue({ code: 'custom', message: parsed.error });
      return z.NEVER;
    })
    .optional(),
);

const EnvSchema = z.object({
  DATABASE_URL: z.string().url().optional(),
  MIGRATION_DATABASE_URL: z.string().url().optional(),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  NATS_URL: natsServers,
  /** What agents are told to connect to; defaults to NATS_URL. */
  AGENT_NATS_URL: natsServers,
  NATS_OPERATOR_SEED: z.string().startsWith('SO').optional(),
  NATS_ACCOUNT_SEED: z.string().startsWith('SA').optional(),
  NATS_SYSTEM_ACCOUNT_SEED: z.string().startsWith('SA').optional(),
  HOST: z.string().default('0.0.0.0'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** Base URL agents and users reach the control plane at; defaults to http://localhost:PORT. */
  PUBLIC_URL: z.string().url().optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  AGENT_HEARTBEAT_SECONDS: seconds(2),
  /** An agent silent for this long is OFFLINE and the leases of its attempts expire. */
  LEASE_SECONDS: seconds(8),
  SWEEP_INTERVAL_SECONDS: seconds(1),
  CANCEL_GRACE_SECONDS: z.coerce.number().int().min(0).max(600).default(10),
  JOIN_TOKEN_MAX_TTL_SECONDS: z.coerce
    .number()
    .int()
    .positive()
    .default(7 * 24 * 3600),
  OUTBOX_RELAY: bool(true),
  /** Requests per minute per API token (or per address when anonymous), per replica. */
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().positive().default(6000),
  /** GraphQL documents costing more (one point per field, lists counted once) are refused. */
  GRAPHQL_MAX_COMPLEXITY: z.coerce.number().int().positive().default(2000),
  GRAPHQL_MAX_DEPTH: z.coerce.number().int().positive().default(10),
  /** Telemetry (issue 5): retention per resolution, in days. */
  TELEMETRY_RAW_RETENTION_DAYS: z.coerce.number().int().min(1).max(90).default(7),
  TELEMETRY_MINUTE_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  TELEMETRY_HOUR_RETENTION_DAYS: z.coerce.number().int().min(1).max(36500).default(730),
  /** How often replicas try the periodic telemetry work (one of them does each pass). */
  TELEMETRY_ROLLUP_INTERVAL_SECONDS: seconds(15),
  /** A minute is rolled up this long after it ends: samples still in flight get in first. */
  TELEMETRY_ROLLUP_SETTLE_SECONDS: seconds(60),
  TELEMETRY_IDLE_INTERVAL_SECONDS: seconds(30),
  TELEMETRY_RETENTION_INTERVAL_SECONDS: seconds(3600),
  /** Ingest: a batch goes to Postgres after this long, or at this many GPU samples. */
  TELEMETRY_FLUSH_MS: z.coerce.number().int().min(10).max(10_000).default(250),
  TELEMETRY_FLUSH_SAMPLES: z.coerce.number().int().min(1).max(200_000).default(20_000),
  /** Per agent and replica: a burst (a backfill) of this many samples, then this many per second. */
  TELEMETRY_AGENT_BURST_SAMPLES: z.coerce.number().int().min(1).default(20_000),
  TELEMETRY_AGENT_SAMPLES_PER_SECOND: z.coerce.number().positive().default(2),
  /** The telemetry stream's limits: bytes in all, messages per agent. */
  TELEMETRY_STREAM_MAX_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(2 * 1024 ** 3),
  TELEMETRY_STREAM_MAX_MSGS_PER_AGENT: z.coerce.number().int().positive().default(5000),
  /** Demo only: where the demo keeps its embedded Postgres and NATS state. */
  HEARTH_HOME: z.string().default('.hearth'),
  /** Fault injection for durability tests: exit the process at a named point. Never set in production. */
  HEARTH_FAULT: z.enum(['', 'relay-after-publish']).default(''),
});

export interface NatsAuthSecrets {
  operatorSeed: string;
  accountSeed: string;
  systemAccountSeed: string;
}

export interface Config {
  database: { url: string | undefined; migrationUrl: string | undefined; poolSize: number };
  nats: { url: string | undefined; agentUrl: string | undefined; auth: NatsAuthSecrets | null };
  http: { host: string; port: number; publicUrl: string };
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
  fleet: {
    heartbeatSeconds: number;
    leaseSeconds: number;
    sweepIntervalSeconds: number;
    joinTokenMaxTtlSeconds: number;
  };
  jobs: { cancelGraceSeconds: number; outboxRelay: boolean };
  limits: { requestsPerMinute: number; graphqlMaxComplexity: number; graphqlMaxDepth: number };
  telemetry: TelemetryConfig;
  fault: string;
  home: string;
}

export interface TelemetryConfig {
  retentionDays: { raw: number; minute: number; hour: number };
  rollupIntervalSeconds: number;
  rollupSettleSeconds: number;
  idleIntervalSeconds: number;
  retentionIntervalSeconds: number;
  flushMs: number;
  flushSamples: number;
  agentBurstSamples: number;
  agentSamplesPerSecond: number;
  streamMaxBytes: number;
  streamMaxMessagesPerAgent: number;
}

export class ConfigError extends Error {}

/** Reads the environment; `overrides` (the demo's embedded services) win over it. */
export function loadConfig(overrides: Record<string, string | undefined> = {}): Config {
  const parsed = EnvSchema.safeParse({ ...process.env, ...overrides });
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const seeds = [e.NATS_OPERATOR_SEED, e.NATS_ACCOUNT_SEED, e.NATS_SYSTEM_ACCOUNT_SEED];
  if (seeds.some(Boolean) && !seeds.every(Boolean)) {
    throw new ConfigError(
      'invalid configuration:\n  NATS_OPERATOR_SEED, NATS_ACCOUNT_SEED and NATS_SYSTEM_ACCOUNT_SEED go together',
    );
  }
  const auth = e.NATS_OPERATOR_SEED
    ? {
        operatorSeed: e.NATS_OPERATOR_SEED,
        accountSeed: e.NATS_ACCOUNT_SEED!,
        systemAccountSeed: e.NATS_SYSTEM_ACCOUNT_SEED!,
      }
    : null;
  return Object.freeze({
    database: {
      url: e.DATABASE_URL,
      migrationUrl: e.MIGRATION_DATABASE_URL ?? e.DATABASE_URL,
      poolSize: e.DATABASE_POOL_SIZE,
    },
    nats: { url: e.NATS_URL, agentUrl: e.AGENT_NATS_URL ?? e.NATS_URL, auth },
    http: { host: e.HOST, port: e.PORT, publicUrl: e.PUBLIC_URL ?? `http://localhost:${e.PORT}` },
    logLevel: e.LOG_LEVEL,
    fleet: {
      heartbeatSeconds: e.AGENT_HEARTBEAT_SECONDS,
      leaseSeconds: e.LEASE_SECONDS,
      sweepIntervalSeconds: e.SWEEP_INTERVAL_SECONDS,
      joinTokenMaxTtlSeconds: e.JOIN_TOKEN_MAX_TTL_SECONDS,
    },
    jobs: { cancelGraceSeconds: e.CANCEL_GRACE_SECONDS, outboxRelay: e.OUTBOX_RELAY },
    limits: {
      requestsPerMinute: e.RATE_LIMIT_PER_MINUTE,
      graphqlMaxComplexity: e.GRAPHQL_MAX_COMPLEXITY,
      graphqlMaxDepth: e.GRAPHQL_MAX_DEPTH,
    },
    telemetry: {
      retentionDays: {
        raw: e.TELEMETRY_RAW_RETENTION_DAYS,
        minute: e.TELEMETRY_MINUTE_RETENTION_DAYS,
        hour: e.TELEMETRY_HOUR_RETENTION_DAYS,
      },
      rollupIntervalSeconds: e.TELEMETRY_ROLLUP_INTERVAL_SECONDS,
      rollupSettleSeconds: e.TELEMETRY_ROLLUP_SETTLE_SECONDS,
      idleIntervalSeconds: e.TELEMETRY_IDLE_INTERVAL_SECONDS,
      retentionIntervalSeconds: e.TELEMETRY_RETENTION_INTERVAL_SECONDS,
      flushMs: e.TELEMETRY_FLUSH_MS,
      flushSamples: e.TELEMETRY_FLUSH_SAMPLES,
      agentBurstSamples: e.TELEMETRY_AGENT_BURST_SAMPLES,
      agentSamplesPerSecond: e.TELEMETRY_AGENT_SAMPLES_PER_SECOND,
      streamMaxBytes: e.TELEMETRY_STREAM_MAX_BYTES,
      streamMaxMessagesPerAgent: e.TELEMETRY_STREAM_MAX_MSGS_PER_AGENT,
    },
    fault: e.HEARTH_FAULT,
    home: e.HEARTH_HOME,
  });
}

/** Nest injection token for Config. */
export const CONFIG = Symbol('CONFIG');
