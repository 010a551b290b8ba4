/**
 * Certificates for tests of TLS endpoints, made by the openssl command line (OpenSSL 3), the tool
 * customer IT uses for the same job: a CA, and certificates it issues for a server (localhost and
 * 127.0.0.1) or a client. EC P-256 keys, valid for two days, PEM files in a directory of the test's.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';

export interface PemPair {
  /** The certificate file, PEM. */
  readonly cert: string;
  /** Its unencrypted private key file, PEM. */
  readonly key: string;
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A self-signed CA named `name`, its files `<dir>/<name>.crt` and `.key`. */
export function makeCertificateAuthority(dir: string, name: string): PemPair {
  fs.mkdirSync(dir, { recursive: true });
  const pair = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
  openssl([
    'req', '-x509', ...KEY, '-days', '2', '-subj', `/CN=${name}`,
    '-keyout', pair.key, '-out', pair.cert,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]); // prettier-ignore
  return pair;
}

/**
 * A certificate for `name` issued by `ca`, good for a server on localhost / 127.0.0.1 and for a
 * client; its files `<dir>/<name>.crt` and `.key` (overwritten when they exist: a rotation).
 */
export function issueCertificate(ca: PemPair, dir: string, name: string): PemPair {
  fs.mkdirSync(dir, { recursive: true });
  const pair = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
  // Written beside and renamed into place, as a rotation should be.
  const tmp = { cert: `${pair.cert}.new`, key: `${pair.key}.new` };
  openssl([
    'req', '-x509', ...KEY, '-days', '2', '-subj', `/CN=${name}`,
    '-CA', ca.cert, '-CAkey', ca.key,
    '-keyout', tmp.key, '-out', tmp.cert,
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-addext', 'basicConstraints=CA:FALSE',
    '-addext', 'extendedKeyUsage=serverAuth,clientAuth',
  ]); // prettier-ignore
  fs.renameSync(tmp.key, pair.key);
  fs.renameSync(tmp.cert, pair.cert);
  return pair;
}

/**
 * A revocation list (PEM) signed by `ca` that lists `revoked`, written to `<dir>/<name>.crl`
 * (renamed into place, as a renewal should be). `openssl ca` keeps its records in `<dir>/<name>.db/`.
 * It is valid for `validSeconds` from now (wait past a short one for an expired list).
 */
export function revocationList(
  ca: PemPair,
  dir: string,
  name: string,
  revoked: readonly PemPair[],
  validSeconds = 2 * 86_400,
): string {
  const db = path.join(dir, `${name}.db`);
  fs.rmSync(db, { recursive: true, force: true });
  fs.mkdirSync(db, { recursive: true });
  fs.writeFileSync(path.join(db, 'index.txt'), '');
  fs.writeFileSync(path.join(db, 'crlnumber'), '1000\n');
  const config = path.join(db, 'ca.cnf');
  fs.writeFileSync(
    config,
    [
      '[ca]',
      'default_ca = hearth_test',
      '[hearth_test]',
      `database = ${path.join(db, 'index.txt')}`,
      `crlnumber = ${path.join(db, 'crlnumber')}`,
      'default_md = sha256',
      '',
    ].join('\n'),
  );
  const signer = ['-config', config, '-cert', ca.cert, '-keyfile', ca.key];
  for (const pair of revoked) openssl(['ca', ...signer, '-revoke', pair.cert]);
  const file = path.join(dir, `${name}.crl`);
  openssl(['ca', ...signer, '-gencrl', '-crlsec', String(validSeconds), '-out', `${file}.new`]);
  fs.renameSync(`${file}.new`, file);
  return file;
}

export interface HttpsAnswer {
  readonly status: number;
  readonly text: string;
  /** The SHA-256 fingerprint of the certificate the server presented (colon-separated hex). */
  readonly serverFingerprint256: string;
}

/**
 * One request over a connection of its own, trusting only `ca` (PEM file) and presenting the
 * client certificate `client` when given: what a mutual-TLS client of the endpoint does.
 */
export function httpsRequest(
  url: string,
  options: { ca: string; client?: PemPair; method?: string; body?: string },
): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
        agent: false,
        ca: fs.readFileSync(options.ca),
        ...(options.client
          ? { cert: fs.readFileSync(options.client.cert), key: fs.readFileSync(options.client.key) }
          : {}),
        headers: options.body === undefined ? {} : { 'content-type': 'application/json' },
      },
      (res) => {
        const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, text, serverFingerprint256: fingerprint }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}
