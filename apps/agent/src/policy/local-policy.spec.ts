import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  DEFAULT_ENV_DENY,
  DEFAULT_MAX_DATASET_BYTES,
  PolicyError,
  artifactPathFor,
  loadLocalPolicy,
  parseLocalPolicy,
  resolveDatasetUri,
  resolveModelUri,
  type LocalPolicy,
} from './local-policy.js';

// realpath: os.tmpdir() may itself be a link (macOS /var → /private/var).
const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-policy-')));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const dataRoot = path.join(tmp, 'data');
const outside = path.join(tmp, 'outside');
fs.mkdirSync(path.join(dataRoot, 'sub'), { recursive: true });
fs.mkdirSync(outside);
fs.writeFileSync(path.join(dataRoot, 'sub', 'train.csv'), 'a,b\n1,2\n');
fs.writeFileSync(path.join(outside, 'secret.csv'), 'x\n1\n');

function policy(extra: object = {}): LocalPolicy {
  return parseLocalPolicy(
    { dataRoots: [dataRoot], artifactRoot: path.join(tmp, 'artifacts'), ...extra },
    '/etc/hearth/policy.json',
  );
}

function policyError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return (err as Error).message;
  }
  throw new Error('expected a PolicyError');
}

describe('loadLocalPolicy', () => {
  it('gives the safe defaults when the file is missing: nothing may be read or written', () => {
    const dir = path.join(tmp, 'no-policy');
    const p = loadLocalPolicy(dir);
    expect(p).toEqual({
      file: path.join(dir, 'policy.json'),
      dataRoots: [],
      artifactRoot: null,
      maxDatasetBytes: DEFAULT_MAX_DATASET_BYTES,
      commands: {
        enabled: true,
        executables: null,
        envAllow: null,
        envDeny: [...DEFAULT_ENV_DENY],
        sendLogTail: true,
        sandbox: null,
      },
      serve: {
        host: '127.0.0.1',
        port: 8600,
        threads: null,
        workers: 1,
        tls: null,
        limits: {
          maxBodyBytes: 32 * 1024 ** 2,
          maxInFlightBytes: null,
          maxElements: 2 ** 25,
          maxStringElements: 2 ** 20,
          maxConnections: 1024,
          maxConnectionsPerAddress: null,
        },
      },
      metrics: { host: '127.0.0.1', port: null, tls: null },
      logs: { keepDays: 30, maxTotalBytes: 10 * 1024 ** 3 },
    });
    expect(Object.isFrozen(p)).toBe(true);
    expect(Object.isFrozen(p.metrics)).toBe(true);
    expect(Object.isFrozen(p.dataRoots)).toBe(true);
    expect(Object.isFrozen(p.serve)).toBe(true);
    expect(policyError(() => resolveDatasetUri('file:///data/x.csv', p))).toBe(
      `no data roots are configured on this agent, so no dataset may be read: add the directory holding your data ` +
        `to "dataRoots" in ${path.join(dir, 'policy.json')}`,
    );
  });

  it('reads <data-dir>/policy.json', () => {
    const dir = path.join(tmp, 'agent');
    fs.mkdirSync(dir);
    fs.writeFileSync(
      path.join(dir, 'policy.json'),
      JSON.stringify({
        dataRoots: ['/srv/data/'],
        artifactRoot: '/srv/models',
        maxDatasetBytes: 1000,
        commands: {
          enabled: false,
          executables: ['/opt/ml/bin/', { path: '/usr/bin/python3', argsPrefix: ['/opt/jobs/train.py'] }],
          envAllow: ['MLFLOW_*'],
          envDeny: [],
          sendLogTail: false,
          sandbox: {
            network: false,
            hidePaths: ['/home/', '/srv/../srv/secrets'],
            devices: ['/dev/infiniband/'],
          },
        },
        serve: {
          port: 9000,
          threads: 1,
          workers: 4,
          tls: { certFile: '/etc/hearth/serve.crt', keyFile: '/etc/hearth/../hearth/serve.key' },
          limits: { maxBodyBytes: 128 * 1024 ** 2, maxConnections: 64, maxConnectionsPerAddress: 16 },
        },
        metrics: {
          host: '0.0.0.0',
          port: 9464,
          tls: {
            certFile: '/etc/hearth/m.crt',
            keyFile: '/etc/hearth/m.key',
            clientCaFile: '/etc/hearth/prometheus-ca.pem',
            crlFile: '/etc/hearth/prometheus-ca.crl',
          },
        },
        logs: { keepDays: 7, maxTotalBytes: 2 * 1024 ** 3 },
      }),
    );
    expect(loadLocalPolicy(dir)).toEqual({
      file: path.join(dir, 'policy.json'),
      dataRoots: ['/srv/data'],
      artifactRoot: '/srv/models',
      maxDatasetBytes: 1000,
      commands: {
        enabled: false,
        executables: [
          { path: '/opt/ml/bin/', argsPrefix: [] },
          { path: '/usr/bin/python3', argsPrefix: ['/opt/jobs/train.py'] },
        ],
        envAllow: ['MLFLOW_*'],
        envDeny: [],
        sendLogTail: false,
        sandbox: { network: false, hidePaths: ['/home', '/srv/secrets'], devices: ['/dev/infiniband'] },
      },
      serve: {
        host: '127.0.0.1',
        port: 9000,
        threads: 1,
        workers: 4,
        // No client CA unless one is named: any client may connect, over TLS.
        tls: {
          certFile: '/etc/hearth/serve.crt',
          keyFile: '/etc/hearth/serve.key',
          clientCaFile: null,
          crlFile: null,
        },
        // The limits not named keep their defaults.
        limits: {
          maxBodyBytes: 128 * 1024 ** 2,
          maxInFlightBytes: null,
          maxElements: 2 ** 25,
          maxStringElements: 2 ** 20,
          maxConnections: 64,
          maxConnectionsPerAddress: 16,
        },
      },
      metrics: {
        host: '0.0.0.0',
        port: 9464,
        tls: {
          certFile: '/etc/hearth/m.crt',
          keyFile: '/etc/hearth/m.key',
          clientCaFile: '/etc/hearth/prometheus-ca.pem',
          crlFile: '/etc/hearth/prometheus-ca.crl',
        },
      },
      logs: { keepDays: 7, maxTotalBytes: 2 * 1024 ** 3 },
    });
    expect(Object.isFrozen(loadLocalPolicy(dir).serve.tls)).toBe(true);
    expect(Object.isFrozen(loadLocalPolicy(dir).serve.limits)).toBe(true);
  });

  it('rejects a bad file with the field to fix', () => {
    const file = path.join(tmp, 'bad.json');
    fs.writeFileSync(file, '{"dataRoots": ["relative/dir"]}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toBe(
      `the local policy ${file} is invalid at dataRoots.0: must be an absolute path`,
    );
    fs.writeFileSync(file, '{"dataroots": ["/data"]}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toMatch(
      /is invalid at \(the whole file\): Unrecognized key: "dataroots"/,
    );
    fs.writeFileSync(file, '{"serve": {"port": 70000}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toMatch(/is invalid at serve\.port: /);
    fs.writeFileSync(file, '{"serve": {"threads": 0}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toMatch(/is invalid at serve\.threads: /);
    fs.writeFileSync(file, '{"serve": {"threads": 1.5}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toMatch(/is invalid at serve\.threads: /);
    fs.writeFileSync(file, '{"serve": {"workers": 0}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toMatch(/is invalid at serve\.workers: /);
    fs.writeFileSync(file, '{"serve": {"limits": {"maxBodyBytes": 1073741824}}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toMatch(
      /is invalid at serve\.limits\.maxBodyBytes: /,
    );
    fs.writeFileSync(file, '{"serve": {"limits": {"maxBodyBytes": 65536, "maxInFlightBytes": 4096}}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toBe(
      `the local policy ${file} is invalid at serve.limits.maxInFlightBytes: must be at least maxBodyBytes: a request of the largest size could never be answered`,
    );
    fs.writeFileSync(file, '{"serve": {"tls": {"certFile": "/c", "keyFile": "/k", "crlFile": "/ca.crl"}}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toBe(
      `the local policy ${file} is invalid at serve.tls.crlFile: a revocation list is for client certificates: it needs clientCaFile`,
    );
    fs.writeFileSync(file, '{"serve": {"limits": {"maxBody": 65536}}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toMatch(/is invalid at serve\.limits: /);
    fs.writeFileSync(file, '{"serve": {"tls": {"certFile": "/etc/hearth/serve.crt"}}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toMatch(/is invalid at serve\.tls\.keyFile: /);
    fs.writeFileSync(file, '{"serve": {"tls": {"certFile": "serve.crt", "keyFile": "/k"}}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toBe(
      `the local policy ${file} is invalid at serve.tls.certFile: must be an absolute path`,
    );
    fs.writeFileSync(file, '{"serve": {"tls": {"certFile": "/c", "keyFile": "/k", "caFile": "/ca"}}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toMatch(
      /is invalid at serve\.tls: Unrecognized key: "caFile"/,
    );
    fs.writeFileSync(file, '{"metrics": {"port": "9464"}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toMatch(/is invalid at metrics\.port: /);
    fs.writeFileSync(file, '{"metrics": {"port": 9464, "path": "/m"}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toMatch(
      /is invalid at metrics: Unrecognized key: "path"/,
    );
    fs.writeFileSync(file, '{"commands": {"sandbox": {"devices": ["/home/me"]}}}');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toBe(
      `the local policy ${file} is invalid at commands.sandbox.devices.0: must be /dev or a path under it`,
    );
    fs.writeFileSync(file, '{not json');
    expect(policyError(() => loadLocalPolicy(tmp, file))).toBe(`the local policy ${file} is not valid JSON`);
  });
});

describe('resolveDatasetUri', () => {
  const uri = (p: string) => pathToFileURL(p).href;

  it('resolves a file under a data root to its real path and size', () => {
    expect(resolveDatasetUri(uri(path.join(dataRoot, 'sub', 'train.csv')), policy())).toEqual({
      path: path.join(dataRoot, 'sub', 'train.csv'),
      sizeBytes: 8,
    });
    expect(
      resolveDatasetUri(`file://localhost${path.join(dataRoot, 'sub', 'train.csv')}`, policy()).sizeBytes,
    ).toBe(8);
  });

  it('refuses a path outside the roots, also through .. (plain or percent-encoded)', () => {
    const expected =
      `the dataset ${'%URI%'} is outside the data roots allowed on this agent (${dataRoot}); move it under one of ` +
      `them or add its directory to "dataRoots" in /etc/hearth/policy.json`;
    for (const bad of [
      uri(path.join(outside, 'secret.csv')),
      `file://${dataRoot}/../outside/secret.csv`,
      `file://${dataRoot}/sub/%2e%2e/%2E%2E/outside/secret.csv`,
      `file://${dataRoot}-evil/x.csv`,
    ]) {
      expect(policyError(() => resolveDatasetUri(bad, policy()))).toBe(expected.replace('%URI%', bad));
    }
  });

  it('refuses a symbolic link inside a root that leads outside it', () => {
    fs.symlinkSync(path.join(outside, 'secret.csv'), path.join(dataRoot, 'link.csv'));
    fs.symlinkSync(outside, path.join(dataRoot, 'linkdir'));
    for (const name of ['link.csv', 'linkdir/secret.csv']) {
      expect(policyError(() => resolveDatasetUri(uri(path.join(dataRoot, name)), policy()))).toMatch(
        /is a symbolic link \(or under one\) that leads outside the data roots allowed on this agent/,
      );
    }
  });

  it('follows a data root that is itself a link', () => {
    const linkedRoot = path.join(tmp, 'data-link');
    fs.symlinkSync(dataRoot, linkedRoot);
    const p = policy({ dataRoots: [linkedRoot] });
    expect(resolveDatasetUri(uri(path.join(linkedRoot, 'sub', 'train.csv')), p).path).toBe(
      path.join(dataRoot, 'sub', 'train.csv'),
    );
  });

  it('refuses other schemes, remote hosts, missing files and directories', () => {
    expect(policyError(() => resolveDatasetUri('s3://bucket/train.csv', policy()))).toBe(
      'unsupported dataset URI scheme "s3": this agent reads datasets from file:// URIs under its data roots only',
    );
    expect(policyError(() => resolveDatasetUri('https://example.com/x.csv', policy()))).toMatch(
      /unsupported dataset URI scheme "https"/,
    );
    expect(policyError(() => resolveDatasetUri(`file://fileserver${dataRoot}/x.csv`, policy()))).toMatch(
      /names a remote host/,
    );
    expect(policyError(() => resolveDatasetUri(uri(path.join(dataRoot, 'nope.csv')), policy()))).toBe(
      `the dataset ${uri(path.join(dataRoot, 'nope.csv'))} does not exist`,
    );
    expect(policyError(() => resolveDatasetUri(uri(path.join(dataRoot, 'sub')), policy()))).toMatch(
      /is not a regular file$/,
    );
    expect(policyError(() => resolveDatasetUri('not a uri', policy()))).toMatch(/is not a valid URI/);
    expect(policyError(() => resolveDatasetUri(`file://${dataRoot}/a%00b.csv`, policy()))).toMatch(
      /is not a valid file path/,
    );
  });
});

describe('artifactPathFor', () => {
  const jobId = '0190f3a4-5b6c-7d8e-9f00-112233445566';
  const attemptId = '0190f3a4-5b6c-7d8e-9f00-112233445577';

  it('places the file under <artifactRoot>/<job>/<attempt>, creating 0700 directories', () => {
    const file = artifactPathFor(policy(), jobId, attemptId, 'model.onnx');
    expect(file).toBe(path.join(tmp, 'artifacts', jobId, attemptId, 'model.onnx'));
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(tmp, 'artifacts', jobId)).mode & 0o777).toBe(0o700);
  });

  it('refuses when no artifact root is configured, and names that cannot stay inside it', () => {
    expect(
      policyError(() => artifactPathFor(policy({ artifactRoot: null }), jobId, attemptId, 'm.onnx')),
    ).toBe(
      'no artifact root is configured on this agent, so models cannot be saved: set "artifactRoot" to a directory ' +
        'in /etc/hearth/policy.json',
    );
    for (const name of ['../m.onnx', 'a/b', '..', '.hidden']) {
      expect(policyError(() => artifactPathFor(policy(), jobId, attemptId, name))).toMatch(
        /^invalid artifact file name/,
      );
    }
    expect(policyError(() => artifactPathFor(policy(), '../x', attemptId, 'm.onnx'))).toMatch(
      /invalid job or attempt id/,
    );
  });

  it('refuses a job directory that a link sends outside the artifact root', () => {
    const root = path.join(tmp, 'artifacts-2');
    fs.mkdirSync(root);
    fs.symlinkSync(outside, path.join(root, jobId));
    expect(
      policyError(() => artifactPathFor(policy({ artifactRoot: root }), jobId, attemptId, 'm.onnx')),
    ).toBe(`${path.join(root, jobId)} is not a plain directory inside the artifact root (a symbolic link?)`);
    expect(fs.readdirSync(outside)).toEqual(['secret.csv']);
  });
});

describe('resolveModelUri', () => {
  const artifactRoot = path.join(tmp, 'models');
  const model = path.join(artifactRoot, 'job', 'attempt', 'model.onnx');
  fs.mkdirSync(path.dirname(model), { recursive: true });
  fs.writeFileSync(model, 'onnx');
  const elsewhere = path.join(tmp, 'elsewhere');
  fs.mkdirSync(elsewhere);
  fs.writeFileSync(path.join(elsewhere, 'model.onnx'), 'onnx');
  const uri = (p: string) => pathToFileURL(p).href;
  const withRoot = () => policy({ artifactRoot });

  it('resolves a model under the artifact root to its real path and size', () => {
    expect(resolveModelUri(uri(model), withRoot())).toEqual({ path: model, sizeBytes: 4 });
  });

  it('refuses a model outside the artifact root, also through a link, and without a root', () => {
    const outsideModel = uri(path.join(elsewhere, 'model.onnx'));
    expect(policyError(() => resolveModelUri(outsideModel, withRoot()))).toBe(
      `the model ${outsideModel} is outside the artifact root of this agent (${artifactRoot}); models are ` +
        'loaded only from under "artifactRoot" in /etc/hearth/policy.json',
    );
    const link = path.join(artifactRoot, 'escape.onnx');
    fs.symlinkSync(path.join(elsewhere, 'model.onnx'), link);
    expect(policyError(() => resolveModelUri(uri(link), withRoot()))).toMatch(
      /is a symbolic link \(or under one\) that leads outside the artifact root/,
    );
    expect(policyError(() => resolveModelUri(uri(model), policy({ artifactRoot: null })))).toMatch(
      /^no artifact root is configured on this agent, so no model may be loaded/,
    );
  });

  it('refuses other schemes, missing files and directories', () => {
    expect(policyError(() => resolveModelUri('s3://bucket/model.onnx', withRoot()))).toBe(
      'unsupported model URI scheme "s3": this agent reads models from file:// URIs under its artifact root only',
    );
    const missing = uri(path.join(artifactRoot, 'missing.onnx'));
    expect(policyError(() => resolveModelUri(missing, withRoot()))).toBe(
      `the model ${missing} does not exist`,
    );
    const directory = uri(path.dirname(model));
    expect(policyError(() => resolveModelUri(directory, withRoot()))).toBe(
      `the model ${directory} is not a regular file`,
    );
  });
});
