/**
 * The inference server's TLS files: checked before use with a message naming the field and the
 * file, and re-read when they change. Certificates from the openssl command line.
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { issueCertificate, makeCertificateAuthority, revocationList, waitFor } from '@hearth/testing';
import type { ServeTlsPolicy } from '../policy/local-policy.js';
import { ServeTlsError, loadServeTls, watchServeTls } from './serve-tls.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-serve-tls-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const ca = makeCertificateAuthority(dir, 'clients-ca');
const server = issueCertificate(ca, dir, 'server');
const other = issueCertificate(ca, dir, 'other');
const fingerprint = (file: string) => new X509Certificate(fs.readFileSync(file)).fingerprint256;

const policy = (overrides: Partial<ServeTlsPolicy> = {}): ServeTlsPolicy => ({
  certFile: server.cert,
  keyFile: server.key,
  clientCaFile: null,
  ...overrides,
});

function refused(p: ServeTlsPolicy, now?: Date): string {
  try {
    loadServeTls(p, now);
  } catch (err) {
    expect(err).toBeInstanceOf(ServeTlsError);
    return (err as Error).message;
  }
  throw new Error('loadServeTls accepted it');
}

describe('loadServeTls', () => {
  it('reads a certificate, its key and a client CA, and describes the certificate without its key', () => {
    const material = loadServeTls(policy({ clientCaFile: ca.cert }));
    expect(material.cert).toEqual(fs.readFileSync(server.cert));
    expect(material.ca).toEqual(fs.readFileSync(ca.cert));
    expect(material.certificate).toEqual({
      subject: 'CN=server',
      fingerprint256: fingerprint(server.cert),
      validTo: new X509Certificate(fs.readFileSync(server.cert)).validTo,
    });
    expect(loadServeTls(policy()).ca).toBeNull();
  });

  it('names the field and the file that is missing or unreadable', () => {
    const missing = path.join(dir, 'missing.crt');
    expect(refused(policy({ certFile: missing }))).toBe(`serve.tls.certFile ${missing} does not exist`);
    expect(refused(policy({ clientCaFile: missing }))).toBe(
      `serve.tls.clientCaFile ${missing} does not exist`,
    );
    expect(refused(policy({ keyFile: dir }))).toBe(
      `serve.tls.keyFile ${dir} cannot be read by the agent (EISDIR)`,
    );
  });

  it('refuses files that are not what their field says', () => {
    expect(refused(policy({ certFile: server.key }))).toBe(
      `serve.tls.certFile ${server.key} is not a PEM certificate`,
    );
    expect(refused(policy({ keyFile: server.cert }))).toBe(
      `serve.tls.keyFile ${server.cert} is not a PEM private key`,
    );
    expect(refused(policy({ clientCaFile: ca.key }))).toBe(
      `serve.tls.clientCaFile ${ca.key} is not a PEM certificate`,
    );
    expect(refused(policy({ clientCaFile: ca.cert, crlFile: ca.cert }))).toBe(
      `serve.tls.crlFile ${ca.cert} is not a PEM certificate revocation list`,
    );
  });

  it('reads a revocation list of the client CA', () => {
    const crlFile = revocationList(ca, dir, 'clients', [other]);
    const material = loadServeTls(policy({ clientCaFile: ca.cert, crlFile }));
    expect(material.crl).toEqual(fs.readFileSync(crlFile));
    expect(loadServeTls(policy({ clientCaFile: ca.cert })).crl).toBeNull();
  });

  it('refuses a key that belongs to another certificate, and an encrypted key', () => {
    expect(refused(policy({ keyFile: other.key }))).toBe(
      `serve.tls.keyFile ${other.key} is not the private key of the certificate in ${server.cert}`,
    );
    const encrypted = path.join(dir, 'encrypted.key');
    execFileSync('openssl', [
      'pkey',
      '-in',
      server.key,
      '-aes256',
      '-passout',
      'pass:secret',
      '-out',
      encrypted,
    ]);
    expect(refused(policy({ keyFile: encrypted }))).toMatch(
      new RegExp(`^serve\\.tls\\.keyFile ${encrypted} is encrypted; the agent needs the key unencrypted`),
    );
  });

  it('refuses a certificate out of its validity period', () => {
    const { validTo, validFrom } = new X509Certificate(fs.readFileSync(server.cert));
    const later = new Date(Date.parse(validTo) + 1000);
    expect(refused(policy(), later)).toBe(
      `the certificate in serve.tls.certFile ${server.cert} expired on ${validTo}`,
    );
    const earlier = new Date(Date.parse(validFrom) - 60_000);
    expect(refused(policy(), earlier)).toBe(
      `the certificate in serve.tls.certFile ${server.cert} is not valid before ${validFrom}`,
    );
  });
});

describe('watchServeTls', () => {
  it('hands over the new files after a rotation, and nothing while the key does not match yet', async () => {
    const rotating = path.join(dir, 'rotating');
    const first = issueCertificate(ca, rotating, 'endpoint');
    const seen: string[] = [];
    const errors: string[] = [];
    const stop = watchServeTls(policy({ certFile: first.cert, keyFile: first.key }), {
      intervalMs: 50,
      onChange: (material) => seen.push(material.certificate.fingerprint256),
      onError: (err) => errors.push(err.message),
    });
    try {
      // Half a rotation: a new certificate, the old key.
      const staging = issueCertificate(ca, path.join(dir, 'staging'), 'endpoint');
      fs.copyFileSync(staging.cert, first.cert);
      await waitFor(() => errors.length > 0, { timeoutMs: 5_000, what: 'the half rotation to be noticed' });
      expect(errors[0]).toBe(
        `serve.tls.keyFile ${first.key} is not the private key of the certificate in ${first.cert}`,
      );
      expect(seen).toEqual([]);
      // The key follows.
      fs.copyFileSync(staging.key, first.key);
      await waitFor(() => seen.length > 0, { timeoutMs: 5_000, what: 'the rotation to be handed over' });
      expect(seen).toEqual([fingerprint(staging.cert)]);
    } finally {
      stop();
    }
    // Stopped: later changes go unnoticed.
    issueCertificate(ca, rotating, 'endpoint');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(seen).toHaveLength(1);
  });
});
