import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { issueCertificate, makeCertificateAuthority } from '@hearth/testing';
import { ConfigError, parseJoinConfig, parseRunConfig } from './config.js';
import { DEFAULT_SERVE_LIMITS } from '../policy/local-policy.js';

describe('parseRunConfig', () => {
  it('applies defaults and freezes the result', () => {
    const config = parseRunConfig({ dataDir: 'data' }, { PATH: '/bin', TMPDIR: '/scratch' });
    expect(config).toEqual({
      dataDir: path.resolve('data'),
      maxJobs: 2,
      natsUrl: null,
      allowPlaintext: false,
      drainSeconds: 30,
      telemetry: { intervalSeconds: 5, bufferSamples: 8640 },
      logLevel: 'info',
      jobBaseEnv: { PATH: '/bin', TMPDIR: '/scratch' },
      // No policy.json in the data dir: the safe defaults (nothing may be read or written).
      policy: {
        file: path.resolve('data', 'policy.json'),
        dataRoots: [],
        artifactRoot: null,
        maxDatasetBytes: 256 * 1024 * 1024,
        commands: {
          enabled: true,
          executables: null,
          envAllow: null,
          envDeny: expect.arrayContaining(['LD_*', 'PATH']),
          sendLogTail: true,
          sandbox: null,
        },
        serve: {
          host: '127.0.0.1',
          port: 8600,
          threads: null,
          workers: 1,
          tls: null,
          limits: DEFAULT_SERVE_LIMITS,
        },
        metrics: { host: '127.0.0.1', port: null, tls: null },
        logs: { keepDays: 30, maxTotalBytes: 10 * 1024 ** 3 },
      },
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.jobBaseEnv)).toBe(true);
  });

  it('reads the environment, and flags win over it', () => {
    const env = {
      HEARTH_AGENT_DATA_DIR: '/var/lib/hearth',
      HEARTH_AGENT_MAX_JOBS: '8',
      HEARTH_AGENT_LOG_LEVEL: 'debug',
      LANG: 'C.UTF-8',
    };
    expect(parseRunConfig({}, env)).toMatchObject({
      dataDir: '/var/lib/hearth',
      maxJobs: 8,
      logLevel: 'debug',
    });
    expect(parseRunConfig({}, env).jobBaseEnv.LANG).toBe('C.UTF-8');
    expect(parseRunConfig({ dataDir: '/d', maxJobs: '3', logLevel: 'warn' }, env)).toMatchObject({
      dataDir: '/d',
      maxJobs: 3,
      logLevel: 'warn',
    });
  });

  it('takes --allow-plaintext from the flag or HEARTH_AGENT_ALLOW_PLAINTEXT (true/1, false/0)', () => {
    const run = (flags: { allowPlaintext?: boolean }, env: Record<string, string>) =>
      parseRunConfig({ dataDir: '/d', ...flags }, env).allowPlaintext;
    expect(run({}, {})).toBe(false);
    expect(run({ allowPlaintext: true }, {})).toBe(true);
    expect(run({}, { HEARTH_AGENT_ALLOW_PLAINTEXT: '1' })).toBe(true);
    expect(run({}, { HEARTH_AGENT_ALLOW_PLAINTEXT: 'false' })).toBe(false);
    expect(() => run({}, { HEARTH_AGENT_ALLOW_PLAINTEXT: 'on' })).toThrow(/must be true or false/);
  });

  it('rejects bad values with a message naming the flag', () => {
    expect(() => parseRunConfig({}, {})).toThrow(ConfigError);
    expect(() => parseRunConfig({ dataDir: '/d', maxJobs: '0' }, {})).toThrow(
      /--max-jobs must be an integer/,
    );
    expect(() => parseRunConfig({ dataDir: '/d', maxJobs: '1.5' }, {})).toThrow(/--max-jobs/);
    expect(() => parseRunConfig({ dataDir: '/d', logLevel: 'loud' }, {})).toThrow(/log level/);
    expect(() => parseRunConfig({ dataDir: '/d', natsUrl: 'http://x' }, {})).toThrow(
      new ConfigError(
        '--nats-url: "http://x" is not a NATS server address; expected nats://host:4222, tls://host:4222 or host:4222',
      ),
    );
    // The agent's NATS client speaks TCP only: a WebSocket URL would fail at every reconnect.
    expect(() => parseRunConfig({ dataDir: '/d', natsUrl: 'wss://nats.example.com:443' }, {})).toThrow(
      new ConfigError(
        '--nats-url: "wss://nats.example.com:443": NATS over WebSocket is not supported; give the nats:// or ' +
          'tls:// address of the NATS server',
      ),
    );
    expect(parseRunConfig({ dataDir: '/d', natsUrl: 'tls://a:4222, nats://b:4222' }, {}).natsUrl).toBe(
      'tls://a:4222,nats://b:4222',
    );
  });

  it('takes the telemetry interval (1 to 60 s) and buffer size from flags or the environment', () => {
    const env = { HEARTH_AGENT_TELEMETRY_INTERVAL: '10', HEARTH_AGENT_TELEMETRY_BUFFER: '100' };
    expect(parseRunConfig({ dataDir: '/d' }, env).telemetry).toEqual({
      intervalSeconds: 10,
      bufferSamples: 100,
    });
    expect(parseRunConfig({ dataDir: '/d', telemetryInterval: '1' }, env).telemetry.intervalSeconds).toBe(1);
    expect(() => parseRunConfig({ dataDir: '/d', telemetryInterval: '0' }, {})).toThrow(
      /--telemetry-interval must be an integer from 1 to 60/,
    );
    expect(() => parseRunConfig({ dataDir: '/d', telemetryInterval: '61' }, {})).toThrow(
      /--telemetry-interval/,
    );
    expect(() => parseRunConfig({ dataDir: '/d', telemetryBuffer: '0' }, {})).toThrow(/--telemetry-buffer/);
  });
});

describe('parseRunConfig: the local policy', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-config-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, content: string) => {
    fs.writeFileSync(path.join(dir, name), content);
    return path.join(dir, name);
  };

  it('reads <data-dir>/policy.json, or the file named by --policy', () => {
    write('policy.json', JSON.stringify({ dataRoots: ['/srv/data'], artifactRoot: '/srv/models' }));
    expect(parseRunConfig({ dataDir: dir }, {}).policy).toMatchObject({
      file: path.join(dir, 'policy.json'),
      dataRoots: ['/srv/data'],
      artifactRoot: '/srv/models',
    });
    const other = write('other.json', JSON.stringify({ serve: { host: '0.0.0.0', port: 9000 } }));
    expect(parseRunConfig({ dataDir: dir, policy: other }, {}).policy).toMatchObject({
      file: other,
      dataRoots: [],
      serve: { host: '0.0.0.0', port: 9000, threads: null },
    });
  });

  it('stops with a clear message on a malformed policy, or a --policy file that does not exist', () => {
    const broken = write('broken.json', '{"dataRoots": ["relative/path"]}');
    expect(() => parseRunConfig({ dataDir: dir, policy: broken }, {})).toThrow(
      new ConfigError(`the local policy ${broken} is invalid at dataRoots.0: must be an absolute path`),
    );
    const notJson = write('not-json.json', 'dataRoots: [/srv]');
    expect(() => parseRunConfig({ dataDir: dir, policy: notJson }, {})).toThrow(/is not valid JSON/);
    expect(() => parseRunConfig({ dataDir: dir, policy: path.join(dir, 'typo.json') }, {})).toThrow(
      /--policy: the local policy .*typo\.json does not exist/,
    );
  });

  it("checks the inference server's TLS files at start, naming the file, and keeps them under serve flags", () => {
    const ca = makeCertificateAuthority(path.join(dir, 'pki'), 'ca');
    const cert = issueCertificate(ca, path.join(dir, 'pki'), 'inference');
    const other = issueCertificate(ca, path.join(dir, 'pki'), 'other');
    const tls = { certFile: cert.cert, keyFile: cert.key, clientCaFile: ca.cert, crlFile: null };
    const good = write('tls.json', JSON.stringify({ serve: { host: '0.0.0.0', tls } }));
    expect(parseRunConfig({ dataDir: dir, policy: good }, {}).policy.serve.tls).toEqual(tls);
    expect(parseRunConfig({ dataDir: dir, policy: good, servePort: '0' }, {}).policy.serve).toMatchObject({
      port: 0,
      tls,
    });

    const mismatched = write(
      'tls-bad.json',
      JSON.stringify({ serve: { tls: { ...tls, keyFile: other.key } } }),
    );
    expect(() => parseRunConfig({ dataDir: dir, policy: mismatched }, {})).toThrow(
      new ConfigError(
        `serve.tls.keyFile ${other.key} is not the private key of the certificate in ${cert.cert} ` +
          `(the local policy ${mismatched})`,
      ),
    );
  });

  it("checks the metrics endpoint's TLS files at start too, naming metrics.tls, and keeps them under metrics flags", () => {
    const ca = makeCertificateAuthority(path.join(dir, 'pki-metrics'), 'ca');
    const cert = issueCertificate(ca, path.join(dir, 'pki-metrics'), 'metrics');
    const tls = { certFile: cert.cert, keyFile: cert.key, clientCaFile: ca.cert, crlFile: null };
    const good = write('metrics-tls.json', JSON.stringify({ metrics: { port: 9464, tls } }));
    expect(parseRunConfig({ dataDir: dir, policy: good, metricsPort: '0' }, {}).policy.metrics).toEqual({
      host: '127.0.0.1',
      port: 0,
      tls,
    });
    const missing = write(
      'metrics-tls-bad.json',
      JSON.stringify({ metrics: { port: 9464, tls: { ...tls, clientCaFile: '/nonexistent/ca.pem' } } }),
    );
    expect(() => parseRunConfig({ dataDir: dir, policy: missing }, {})).toThrow(
      new ConfigError(
        `metrics.tls.clientCaFile /nonexistent/ca.pem does not exist (the local policy ${missing})`,
      ),
    );
  });

  it("lets --serve-host, --serve-port, --serve-threads and --serve-workers override the policy's serve settings (port 0: any free port)", () => {
    const file = write(
      'serve.json',
      JSON.stringify({ serve: { host: '10.0.0.5', port: 9000, threads: 2, limits: { maxConnections: 10 } } }),
    );
    const serve = (flags: {
      serveHost?: string;
      servePort?: string;
      serveThreads?: string;
      serveWorkers?: string;
    }) => parseRunConfig({ dataDir: dir, policy: file, ...flags }, {}).policy.serve;
    // The policy's serve.limits stay under the flags.
    const policy = {
      host: '10.0.0.5',
      port: 9000,
      threads: 2,
      workers: 1,
      tls: null,
      limits: { ...DEFAULT_SERVE_LIMITS, maxConnections: 10 },
    };
    expect(serve({})).toEqual(policy);
    expect(serve({ servePort: '0' })).toEqual({ ...policy, port: 0 });
    expect(serve({ serveHost: '0.0.0.0' })).toEqual({ ...policy, host: '0.0.0.0' });
    expect(serve({ serveThreads: '1' })).toEqual({ ...policy, threads: 1 });
    expect(serve({ serveWorkers: '4' })).toEqual({ ...policy, workers: 4 });
    expect(() => serve({ serveWorkers: '0' })).toThrow(
      /--serve-workers must be an integer from 1 to 256, got "0"/,
    );
    expect(() => serve({ servePort: '70000' })).toThrow(/--serve-port must be an integer from 0 to 65535/);
    expect(() => serve({ serveHost: 'a b' })).toThrow(/--serve-host/);
    expect(() => serve({ serveThreads: '0' })).toThrow(
      /--serve-threads must be an integer from 1 to 1024, got "0"/,
    );
    expect(Object.isFrozen(parseRunConfig({ dataDir: dir, policy: file, servePort: '1' }, {}).policy)).toBe(
      true,
    );
  });

  it("lets --metrics-host and --metrics-port override the policy's metrics endpoint (off unless a port is set)", () => {
    const metrics = (file: string, flags: { metricsHost?: string; metricsPort?: string }) =>
      parseRunConfig({ dataDir: dir, policy: file, ...flags }, {}).policy.metrics;
    const off = write('metrics-off.json', '{}');
    expect(metrics(off, {})).toEqual({ host: '127.0.0.1', port: null, tls: null });
    expect(metrics(off, { metricsPort: '9464' })).toEqual({ host: '127.0.0.1', port: 9464, tls: null });
    expect(metrics(off, { metricsPort: '0' })).toEqual({ host: '127.0.0.1', port: 0, tls: null });
    // A host alone does not turn the endpoint on.
    expect(metrics(off, { metricsHost: '0.0.0.0' })).toEqual({ host: '0.0.0.0', port: null, tls: null });
    const on = write('metrics-on.json', JSON.stringify({ metrics: { host: '10.0.0.5', port: 9100 } }));
    expect(metrics(on, {})).toEqual({ host: '10.0.0.5', port: 9100, tls: null });
    expect(metrics(on, { metricsPort: '9200' })).toEqual({ host: '10.0.0.5', port: 9200, tls: null });
    expect(() => metrics(on, { metricsPort: '-1' })).toThrow(
      new ConfigError('--metrics-port must be an integer from 0 to 65535, got "-1"'),
    );
    expect(() => metrics(on, { metricsHost: 'http://x' })).toThrow(
      new ConfigError('--metrics-host must be a host name or an IP address, got "http://x"'),
    );
  });
});

describe('parseJoinConfig', () => {
  it('parses labels and normalises the URL', () => {
    const config = parseJoinConfig(
      { url: 'https://hearth.example.com/', token: 't', dataDir: '/d', label: ['zone=eu', 'note=a=b'] },
      {},
    );
    expect(config).toMatchObject({ url: 'https://hearth.example.com', labels: { zone: 'eu', note: 'a=b' } });
  });

  it('takes the token from the environment so it need not appear in ps', () => {
    expect(
      parseJoinConfig({ url: 'https://cp', dataDir: '/d' }, { HEARTH_AGENT_JOIN_TOKEN: 'secret' }).token,
    ).toBe('secret');
    expect(() => parseJoinConfig({ url: 'https://cp', dataDir: '/d' }, {})).toThrow(/join token is required/);
  });

  it('refuses plain HTTP to another machine unless plaintext is allowed; loopback is always fine', () => {
    const join = (url: string, flags: { allowPlaintext?: boolean } = {}, env = {}) =>
      parseJoinConfig({ url, token: 't', dataDir: '/d', ...flags }, env);
    for (const url of ['http://hearth.corp:8080', 'http://10.0.0.5', 'http://[fd00::5]:8080/'])
      expect(() => join(url)).toThrow(
        new ConfigError(
          `--url ${new URL(url).origin} is plain HTTP to another machine: the join token and the credentials ` +
            'issued for it would cross the network unencrypted, and anyone on the way could answer in ' +
            "the control plane's place. Use https://, or pass --allow-plaintext on a network you trust " +
            '(a lab, a compose network)',
        ),
      );
    expect(join('http://hearth.corp:8080', { allowPlaintext: true })).toMatchObject({
      url: 'http://hearth.corp:8080',
      allowPlaintext: true,
    });
    expect(join('http://hearth.corp:8080', {}, { HEARTH_AGENT_ALLOW_PLAINTEXT: 'true' }).allowPlaintext).toBe(
      true,
    );
    for (const url of [
      'http://127.0.0.1:8080',
      'http://localhost:8080',
      'http://[::1]:8080',
      'https://hearth.corp',
    ])
      expect(join(url).allowPlaintext).toBe(false);
    expect(() => join('http://127.0.0.1', {}, { HEARTH_AGENT_ALLOW_PLAINTEXT: 'yes' })).toThrow(
      'HEARTH_AGENT_ALLOW_PLAINTEXT must be true or false, got "yes"',
    );
  });

  it('rejects a malformed label or URL', () => {
    expect(() =>
      parseJoinConfig({ url: 'https://cp', token: 't', dataDir: '/d', label: ['novalue'] }, {}),
    ).toThrow(/key=value/);
    expect(() => parseJoinConfig({ url: 'ftp://cp', token: 't', dataDir: '/d' }, {})).toThrow(/http/);
  });
});
