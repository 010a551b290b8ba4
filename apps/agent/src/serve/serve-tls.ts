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
import tls from 'node:tls';
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
  try {
    tls.createSecureContext(secureContextOptions({ cert, key, ca }));
  } catch (err) {
    throw new ServeTlsError(`${where} cannot be used: ${(err as Error).message}`);
  }
  return {
    cert,
    key,
    ca,
    certificate: { subject: leaf.subject, fingerprint256: leaf.fingerprint256, validTo: leaf.validTo },
  };
}

/**
 * The server's TLS options. A client certificate is asked for when there is a client CA, but the
 * handshake does not fail without one: the server answers 403 with the protocol's error body,
 * which tells the client what is missing (as nginx's ssl_verify_client does), and closes.
 */
export function secureContextOptions(
  material: Pick<ServeTlsMaterial, 'cert' | 'key' | 'ca'>,
): tls.TlsOptions {
  return {
    cert: material.cert,
    key: material.key,
    minVersion: 'TLSv1.2',
    ...(material.ca === null ? {} : { ca: material.ca, requestCert: true, rejectUnauthorized: false }),
  };
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
  const files = [policy.certFile, policy.keyFile, policy.clientCaFile].filter((f): f is string => f !== null);
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

/**
 * Keeps an HTTPS server on the policy's current files (watchServeTls): new connections get a
 * rotated certificate; files that fail the checks are logged and the server keeps what it had.
 * `what` names the server in the log. Returns the stop.
 */
export function keepServerTlsCurrent(
  server: https.Server,
  policy: ServeTlsPolicy,
  options: { where: TlsPolicyField; what: string; logger: Logger; intervalMs?: number },
): () => void {
  const { what, logger } = options;
  return watchServeTls(policy, {
    intervalMs: options.intervalMs,
    where: options.where,
    onChange: (material) => {
      server.setSecureContext(secureContextOptions(material));
      logger.info({ certificate: material.certificate }, `${what} TLS files reloaded`);
    },
    onError: (err) => logger.warn({ err: err.message }, `${what} TLS files changed but cannot be used yet`),
  });
}
