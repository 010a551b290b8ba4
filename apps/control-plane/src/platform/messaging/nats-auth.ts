/**
 * NATS decentralized (operator / JWT) authentication. nats-server itself enforces what each agent
 * may publish and subscribe (agentPermissions from the contract), so isolation between agents and
 * tenants does not depend on any code running correctly on the agent or in the control plane.
 *
 * Trust chain: operator → accounts (Hearth application account, system account) → users. Agents
 * generate their own user key pair; we only ever see and sign their public key.
 */
import {
  encodeAccount,
  encodeOperator,
  encodeUser,
  type Account,
  type ConnectionType,
  type OperatorLimits,
} from '@nats-io/jwt';
import {
  createAccount,
  createOperator,
  createUser,
  fromPublic,
  fromSeed,
  type KeyPair,
} from '@nats-io/nkeys';
import type { NatsConnection } from '@nats-io/transport-node';
import { agentPermissions, type AgentAddress } from '@hearth/contracts';

/** The nkey seeds that make up Hearth's NATS trust root. Secrets: never log them. */
export interface NatsOperatorSecrets {
  /** Operator seed (starts with `SO`). */
  operatorSeed: string;
  /** Seed of the Hearth application account (starts with `SA`). */
  accountSeed: string;
  /** Seed of the NATS system account (starts with `SA`); used only to push account claims. */
  systemAccountSeed: string;
}

/** Credentials for a user: connect with `jwtAuthenticator(jwt, seed)`. */
export interface NatsUserCredentials {
  jwt: string;
  seed: Uint8Array;
}

/** Subject the full resolver listens on for account JWT updates (system account only). */
export const CLAIMS_UPDATE_SUBJECT = '$SYS.REQ.CLAIMS.UPDATE';

const OPERATOR_NAME = 'hearth';
const ACCOUNT_NAME = 'HEARTH';
const SYSTEM_ACCOUNT_NAME = 'SYS';
/** Agents connect over plain NATS (TLS) or websockets; never as a leaf node or over MQTT. */
const AGENT_CONNECTION_TYPES: ConnectionType[] = ['STANDARD', 'WEBSOCKET'];

/**
 * Core limits. They must be explicit: an account JWT without limits decodes as all zeros, and
 * nats-server then admits zero connections (clients just time out).
 */
const CORE_LIMITS: OperatorLimits = {
  conn: -1,
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  leaf: -1,
};
/** JetStream is enabled for an account only when its storage limits are non-zero. */
const JETSTREAM_LIMITS: OperatorLimits = { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };

const text = new TextDecoder();
const bytes = new TextEncoder();

export function generateNatsOperatorSecrets(): NatsOperatorSecrets {
  return {
    operatorSeed: text.decode(createOperator().getSeed()),
    accountSeed: text.decode(createAccount().getSeed()),
    systemAccountSeed: text.decode(createAccount().getSeed()),
  };
}

function keyFromSeed(seed: string, prefix: 'O' | 'A', what: string): KeyPair {
  let kp: KeyPair;
  try {
    kp = fromSeed(bytes.encode(seed));
  } catch {
    throw new Error(`NATS ${what} seed is not a valid nkey seed`);
  }
  if (!kp.getPublicKey().startsWith(prefix)) {
    throw new Error(
      `NATS ${what} seed must be an ${prefix === 'O' ? 'operator (SO…)' : 'account (SA…)'} seed`,
    );
  }
  return kp;
}

/** Whether `publicKey` is an nkey user public key: the right prefix and a valid checksum. */
export function isUserPublicKey(publicKey: string): boolean {
  try {
    return fromPublic(publicKey).getPublicKey().startsWith('U');
  } catch {
    return false;
  }
}

/** Checks that a key an agent sent us is a well-formed user public key (U…, valid checksum). */
function userPublicKey(publicKey: string): string {
  if (!isUserPublicKey(publicKey)) throw new Error('agent public key must be an nkey user public key (U…)');
  return publicKey;
}

interface ClaimsUpdateReply {
  data?: { code?: number; message?: string };
  error?: { code?: number; description?: string };
}

/** Signs everything NATS needs: operator, accounts, users. Holds the seeds; never logs them. */
export class NatsAuthority {
  readonly operatorPublicKey: string;
  readonly accountPublicKey: string;
  readonly systemAccountPublicKey: string;
  readonly #operator: KeyPair;
  readonly #account: KeyPair;
  readonly #systemAccount: KeyPair;

  constructor(secrets: NatsOperatorSecrets) {
    this.#operator = keyFromSeed(secrets.operatorSeed, 'O', 'operator');
    this.#account = keyFromSeed(secrets.accountSeed, 'A', 'account');
    this.#systemAccount = keyFromSeed(secrets.systemAccountSeed, 'A', 'system account');
    this.operatorPublicKey = this.#operator.getPublicKey();
    this.accountPublicKey = this.#account.getPublicKey();
    this.systemAccountPublicKey = this.#systemAccount.getPublicKey();
    if (this.accountPublicKey === this.systemAccountPublicKey) {
      throw new Error('NATS account and system account must be different keys');
    }
  }

  async operatorJwt(): Promise<string> {
    return encodeOperator(OPERATOR_NAME, this.#operator, { system_account: this.systemAccountPublicKey });
  }

  /**
   * The Hearth application account: explicit limits, JetStream on, bearer tokens refused, and the
   * revocation list (user public key → unix seconds; user JWTs issued at or before it are refused).
   */
  async accountJwt(revokedUserKeys: Map<string, number> = new Map()): Promise<string> {
    const account: Partial<Account> = {
      limits: { ...CORE_LIMITS, ...JETSTREAM_LIMITS, disallow_bearer: true },
    };
    if (revokedUserKeys.size > 0) account.revocations = Object.fromEntries(revokedUserKeys);
    return encodeAccount(ACCOUNT_NAME, this.#account, account, { signer: this.#operator });
  }

  /** The system account: no JetStream (nats-server does not allow it there). */
  async systemAccountJwt(): Promise<string> {
    return encodeAccount(
      SYSTEM_ACCOUNT_NAME,
      this.#systemAccount,
      { limits: CORE_LIMITS },
      { signer: this.#operator },
    );
  }

  /** A user JWT for the agent's own key pair, limited to exactly what the contract allows. */
  async issueAgentJwt(a: AgentAddress & { publicKey: string }): Promise<string> {
    const permissions = agentPermissions(a);
    return encodeUser(`agent-${a.agentId}`, userPublicKey(a.publicKey), this.#account, {
      pub: { allow: permissions.publish.allow },
      sub: { allow: permissions.subscribe.allow },
      bearer_token: false,
      allowed_connection_types: AGENT_CONNECTION_TYPES,
    });
  }

  /** A control-plane user in the application account, with full permissions. */
  async serviceCredentials(name: string): Promise<NatsUserCredentials> {
    const user = createUser();
    const jwt = await encodeUser(name, user, this.#account, { bearer_token: false });
    return { jwt, seed: user.getSeed() };
  }

  /** A user in the system account, used only to push account claims to the servers. */
  async systemUserCredentials(): Promise<NatsUserCredentials> {
    const user = createUser();
    const jwt = await encodeUser('hearth-claims-pusher', user, this.#systemAccount, { bearer_token: false });
    return { jwt, seed: user.getSeed() };
  }

  /**
   * Re-signs the account with the FULL revocation list and pushes it to the servers' full
   * resolver. nats-server then closes the revoked users' live connections and refuses new ones.
   * `nc` must be connected with systemUserCredentials().
   */
  async revokeUsers(nc: NatsConnection, revoked: Map<string, number>, timeoutMs = 5000): Promise<void> {
    const jwt = await this.accountJwt(revoked);
    const reply = await nc.request(CLAIMS_UPDATE_SUBJECT, jwt, { timeout: timeoutMs });
    let body: ClaimsUpdateReply;
    try {
      body = reply.json<ClaimsUpdateReply>();
    } catch {
      throw new Error(`NATS claims update: unreadable reply ${JSON.stringify(reply.string())}`);
    }
    if (body.data?.code !== 200) {
      const why = body.error?.description ?? JSON.stringify(body);
      throw new Error(`NATS claims update for account ${this.accountPublicKey} failed: ${why}`);
    }
  }
}

export interface NatsServerConfigOptions {
  host: string;
  /** 0 picks a free port (rendered as -1: nats-server reads 0 as its default, 4222). */
  port: number;
  storeDir: string;
  resolverDir: string;
  /**
   * Revocations to bake into the preloaded account JWT. Pass the current list when re-rendering for
   * a restart: a newer preload replaces what the resolver stored, revocations included.
   */
  revokedUserKeys?: Map<string, number>;
  /** TLS for client connections (then required of every client); paths as the server sees them. */
  tls?: NatsServerTls | null;
}

/** The server's certificate and key, PEM files. */
export interface NatsServerTls {
  certFile: string;
  keyFile: string;
}

/** A nats-server config string value (double-quoted; escapes as in JSON). */
const str = (value: string) => JSON.stringify(value);

/**
 * The config lines for TLS on client connections: with a `tls` block nats-server requires TLS of
 * every client (INFO says tls_required), and agents beyond the server's machine accept nothing less.
 */
export function renderTlsBlock(tls: NatsServerTls | null | undefined): string[] {
  if (!tls) return [];
  return ['tls {', `  cert_file: ${str(tls.certFile)}`, `  key_file: ${str(tls.keyFile)}`, '}'];
}

/** nats-server config text: operator mode, full resolver (accepts claim pushes), JetStream. */
export async function renderServerConfig(
  authority: NatsAuthority,
  opts: NatsServerConfigOptions,
): Promise<string> {
  const [operator, account, system] = await Promise.all([
    authority.operatorJwt(),
    authority.accountJwt(opts.revokedUserKeys),
    authority.systemAccountJwt(),
  ]);
  const port = opts.port === 0 ? -1 : opts.port;
  return [
    '# Generated by Hearth: NATS decentralized JWT auth. Contains no secrets (JWTs are public).',
    `listen: ${str(`${opts.host}:${port}`)}`,
    'jetstream {',
    `  store_dir: ${str(opts.storeDir)}`,
    '}',
    ...renderTlsBlock(opts.tls),
    `operator: ${str(operator)}`,
    `system_account: ${str(authority.systemAccountPublicKey)}`,
    'resolver: {',
    '  type: full',
    `  dir: ${str(opts.resolverDir)}`,
    '  allow_delete: false',
    '  interval: "2m"',
    '}',
    'resolver_preload: {',
    `  ${authority.accountPublicKey}: ${str(account)}`,
    `  ${authority.systemAccountPublicKey}: ${str(system)}`,
    '}',
    '',
  ].join('\n');
}
