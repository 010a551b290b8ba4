/**
 * TLS for the inference server (the local policy's serve.tls). Inference requests carry the
 * customer's data, so on a network address they should travel encrypted, and with a client CA
 * only clients holding a certificate it issued are answered (mutual TLS, as a service mesh would
 * give KServe). node:tls does the protocol; this module only reads the PEM files, checks them
 * before the server uses them, so that a mistake is a clear message and not a handshake failure
 * every client sees, and re-reads them when they change, so a rotated certificate is served
 * without restarting the agent or failing requests.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import type https from 'node:https';
import tls, { type TLSSocket } from 'node:tls';
import type { Logger } from '../logger.js';
import type { ServeTlsPolicy } from '../policy/local-policy.js';

/** What is wrong with the TLS files, naming the policy field and the file; shown as is. */
export class ServeTlsError extends Error {
  override readonly name = 'ServeTlsError';
}

/** The checked files' contents, ready for https.createServer or setSecureContext. */
export interface ServeTlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** The client CA; null: no client certificate is asked for. */
  readonly ca: Buffer | null;
  /** Revocation lists of the client CA; null: none. */
  readonly crl: Buffer | null;
  /** The server certificate, for logs: never the key. */
  readonly certificate: {
    readonly subject: string;
    readonly fingerprint256: string;
    readonly validTo: string;
  };
}

/** The local policy's TLS blocks: the inference server's and the metrics endpoint's. */
export type TlsPolicyField = 'serve.tls' | 'metrics.tls';

/** How often the files are looked at for a change (a stat each); rotation is a matter of minutes. */
export const DEFAULT_TLS_RELOAD_MS = 10_000;

/**
 * Reads and checks the policy's files: PEM, the key is the certificate's, in date, usable by
 * OpenSSL. `where` is the policy field the files come from, for messages (the metrics endpoint
 * takes the same block as `metrics.tls`).
 */
export function loadServeTls(
  policy: ServeTlsPolicy,
  now: Date = new Date(),
  where: TlsPolicyField = 'serve.tls',
): ServeTlsMaterial {
  const readFile = (file: string, field: keyof ServeTlsPolicy) => readPem(file, `${where}.${field}`);
  const certificate = (pem: Buffer, file: string, field: keyof ServeTlsPolicy) =>
    parseCertificate(pem, file, `${where}.${field}`);
  const cert = readFile(policy.certFile, 'certFile');
  const key = readFile(policy.keyFile, 'keyFile');
  const ca = policy.clientCaFile === null ? null : readFile(policy.clientCaFile, 'clientCaFile');
  const crlFile = policy.crlFile ?? null;
  const crl = crlFile === null ? null : readFile(crlFile, 'crlFile');

  const leaf = certificate(cert, policy.certFile, 'certFile');
  // PKCS#8 ("ENCRYPTED PRIVATE KEY") or traditional OpenSSL ("Proc-Type: 4,ENCRYPTED") encryption.
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/.test(key.toString('latin1'))) {
    throw new ServeTlsError(
      `${where}.keyFile ${policy.keyFile} is encrypted; the agent needs the key unencrypted ` +
        `(readable by the agent's user only)`,
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new ServeTlsError(`${where}.keyFile ${policy.keyFile} is not a PEM private key`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new ServeTlsError(
      `${where}.keyFile ${policy.keyFile} is not the private key of the certificate in ${policy.certFile}`,
    );
  }
  if (Date.parse(leaf.validTo) <= now.getTime()) {
    throw new ServeTlsError(
      `the certificate in ${where}.certFile ${policy.certFile} expired on ${leaf.validTo}`,
    );
  }
  if (Date.parse(leaf.validFrom) > now.getTime()) {
    throw new ServeTlsError(
      `the certificate in ${where}.certFile ${policy.certFile} is not valid before ${leaf.validFrom}`,
    );
  }
  if (ca !== null && policy.clientCaFile !== null) certificate(ca, policy.clientCaFile, 'clientCaFile');
  if (crl !== null && !crl.toString('latin1').includes('-----BEGIN X509 CRL-----')) {
    throw new ServeTlsError(`${where}.crlFile ${crlFile} is not a PEM certificate revocation list`);
  }
  try {
    tls.createSecureContext(secureContextOptions({ cert, key, ca, crl }));
  } catch (err) {
    throw new ServeTlsError(`${where} cannot be used: ${(err as Error).message}`);
  }
  return {
    cert,
    key,
    ca,
    crl,
    certificate: { subject: leaf.subject, fingerprint256: leaf.fingerprint256, validTo: leaf.validTo },
  };
}

/**
 * The server's TLS options. A client certificate is asked for when there is a client CA, but the
 * handshake does not fail without one: the server answers 403 with the protocol's error body,
 * which tells the client what is missing (as nginx's ssl_verify_client does), and closes.
 */
export function secureContextOptions(
  material: Pick<ServeTlsMaterial, 'cert' | 'key' | 'ca'> & { crl?: Buffer | null },
): tls.TlsOptions {
  return {
    cert: material.cert,
    key: material.key,
    minVersion: 'TLSv1.2',
    ...(material.ca === null ? {} : { ca: material.ca, requestCert: true, rejectUnauthorized: false }),
    // Node turns on OpenSSL's CRL checks (the leaf and every CA above it) when CRLs are given.
    ...(material.ca !== null && material.crl ? { crl: material.crl } : {}),
  };
}

/**
 * Why a client certificate was refused when the fault is the revocation list's, not the client's:
 * OpenSSL refuses every client then (a list that expired, of another CA, or not yet valid).
 */
const CRL_FAULTS = new Set([
  'CRL_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'UNABLE_TO_GET_CRL',
  'CRL_SIGNATURE_FAILURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
]);

/** The revocation list's fault behind a refused client certificate, or null (the client's own). */
function crlFault(socket: TLSSocket): string | null {
  // A code string at run time, whatever the typings say (an Error).
  const reason: unknown = socket.authorizationError;
  const code = typeof reason === 'string' ? reason : ((reason as { code?: string } | null)?.code ?? null);
  return code !== null && CRL_FAULTS.has(code) ? code : null;
}

/**
 * Calls `onChange` with the re-checked material when any of the files changes (polled, so a
 * Kubernetes secret's symlink swap is seen too). Changes within `intervalMs` of each other are read
 * once; material that fails the checks goes to `onError`, and the caller keeps what it had: a
 * certificate written before its key is picked up once the key follows. Returns the stop.
 */
export function watchServeTls(
  policy: ServeTlsPolicy,
  options: {
    intervalMs?: number;
    where?: TlsPolicyField;
    onChange: (material: ServeTlsMaterial) => void;
    onError: (err: ServeTlsError) => void;
  },
): () => void {
  const intervalMs = options.intervalMs ?? DEFAULT_TLS_RELOAD_MS;
  const files = [policy.certFile, policy.keyFile, policy.clientCaFile, policy.crlFile ?? null].filter(
    (f): f is string => f !== null,
  );
  let pending: NodeJS.Timeout | null = null;
  const reload = () => {
    pending = null;
    try {
      options.onChange(loadServeTls(policy, new Date(), options.where));
    } catch (err) {
      options.onError(err instanceof ServeTlsError ? err : new ServeTlsError((err as Error).message));
    }
  };
  const listener = (current: fs.Stats, previous: fs.Stats) => {
    const same =
      current.mtimeMs === previous.mtimeMs && current.ino === previous.ino && current.size === previous.size;
    if (same || pending) return;
    // The other files of a rotation are usually written within moments of the first.
    pending = setTimeout(reload, Math.min(intervalMs, 1_000));
    pending.unref();
  };
  for (const file of files) fs.watchFile(file, { interval: intervalMs, persistent: false }, listener);
  return () => {
    for (const file of files) fs.unwatchFile(file, listener);
    if (pending) clearTimeout(pending);
  };
}

function readPem(file: string, field: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ServeTlsError(
      code === 'ENOENT'
        ? `${field} ${file} does not exist`
        : `${field} ${file} cannot be read by the agent (${code ?? 'error'})`,
    );
  }
}

function parseCertificate(pem: Buffer, file: string, field: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new ServeTlsError(`${field} ${file} is not a PEM certificate`);
  }
}

export interface ServerTlsWatch {
  /** Stops watching the files. */
  stop(): void;
  /**
   * Whether the connection's client certificate was checked against a client CA or revocation
   * list the files no longer hold. A connection is authorized once, at its handshake: without this
   * a client the old CA let in, or one revoked since, would be answered for as long as it kept its
   * connection alive.
   */
  staleClient(socket: TLSSocket): boolean;
  /**
   * To be told of each client refused for its certificate: when the revocation list, not the
   * client, is at fault (it expired, or is of another CA), every client is refused, and the log
   * says so, at most once every 10 s.
   */
  refused(socket: TLSSocket): void;
}

const CRL_WARNING_EVERY_MS = 10_000;

/**
 * Keeps an HTTPS server on the policy's current files (watchServeTls): new connections get a
 * rotated certificate; files that fail the checks are logged and the server keeps what it had.
 * When the client CA changes, idle connections opened under the old one are closed, and the
 * server must refuse requests on the others (staleClient). `ca` is the client CA the server
 * started with; `what` names the server in the log.
 */
export function keepServerTlsCurrent(
  server: https.Server,
  policy: ServeTlsPolicy,
  options: {
    where: TlsPolicyField;
    what: string;
    logger: Logger;
    /** The client CA and revocation lists the server started with. */
    ca: Buffer | null;
    crl: Buffer | null;
    intervalMs?: number;
  },
): ServerTlsWatch {
  const { what, logger } = options;
  let { ca, crl } = options;
  let crlWarnedAt = -Infinity;
  // The client CA each connection was authorized under, by the number of changes before it.
  let caChanges = 0;
  const authorizedUnder = new WeakMap<TLSSocket, number>();
  const onConnection = (socket: TLSSocket) => authorizedUnder.set(socket, caChanges);
  server.on('secureConnection', onConnection);
  const stop = watchServeTls(policy, {
    intervalMs: options.intervalMs,
    where: options.where,
    onChange: (material) => {
      server.setSecureContext(secureContextOptions(material));
      logger.info({ certificate: material.certificate }, `${what} TLS files reloaded`);
      if (sameBytes(ca, material.ca) && sameBytes(crl, material.crl)) return;
      ({ ca, crl } = material);
      caChanges += 1;
      server.closeIdleConnections();
      logger.info(
        `${what} client CA or revocation list changed: connections authorized under the previous ones are closed`,
      );
    },
    onError: (err) => logger.warn({ err: err.message }, `${what} TLS files changed but cannot be used yet`),
  });
  return {
    stop: () => {
      stop();
      server.off('secureConnection', onConnection);
    },
    // A connection from before the watch began was authorized under the first CA.
    staleClient: (socket) => (authorizedUnder.get(socket) ?? 0) < caChanges,
    refused: (socket) => {
      const fault = crlFault(socket);
      if (fault === null || Date.now() - crlWarnedAt < CRL_WARNING_EVERY_MS) return;
      crlWarnedAt = Date.now();
      logger.warn(
        { reason: fault },
        `a client certificate was refused because of ${options.where}.crlFile (expired, of another CA, or not yet valid): every client is refused until it is fixed`,
      );
    },
  };
}

/** The answer (421) to a request on a connection authorized under a replaced client CA. */
export const STALE_CLIENT =
  "the server's client CA or revocation list changed since this connection was opened: send the request again on a new connection";

const sameBytes = (a: Buffer | null, b: Buffer | null) => (a === null || b === null ? a === b : a.equals(b));
