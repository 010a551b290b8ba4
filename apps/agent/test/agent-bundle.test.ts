/**
 * The archive customer IT installs (scripts/pack-agent.js): packed from this repository, unpacked
 * somewhere else, and run with nothing from the repository and no `node` on PATH: it joins a real
 * control plane, runs a command, trains a model, and serves it over the Open Inference Protocol.
 * Its systemd unit passes `systemd-analyze verify` and rates OK in `systemd-analyze security`.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  createOrganization,
  freePort,
  createTestDatabase,
  GraphQLClient,
  REPO_ROOT,
  runProcess,
  SHARED_NATS_URL,
  startControlPlane,
  startProcess,
  waitFor,
  waitForJob,
  type ControlPlane,
  type Proc,
  type TestDatabase,
} from '@hearth/testing';
import { DEFAULT_DRAIN_SECONDS } from '../src/config/config.js';
import { agentDir } from './agent-process.js';

jest.setTimeout(180_000);

const version = (
  JSON.parse(fs.readFileSync(path.join(agentDir, 'package.json'), 'utf8')) as { version: string }
).version;
const name = `hearth-agent-${version}-${process.platform}-${process.arch}`;
const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bundle-')));
/** Where the archive is unpacked: outside the repository, so nothing resolves from its node_modules. */
const home = path.join(tmp, 'opt', name);
const launcher = path.join(home, 'bin', 'hearth-agent');
/** PATH for the installed agent: the two tools its launcher uses, and no node. */
const pathWithoutNode = path.join(tmp, 'path');
let packed: { tarball: string; sha256: string; packages: number };

let db: TestDatabase;
let cp: ControlPlane;
let api: GraphQLClient;
let agent: Proc | undefined;

beforeAll(async () => {
  const pack = await runProcess(process.execPath, [
    path.join(REPO_ROOT, 'scripts', 'pack-agent.js'),
    '--out',
    path.join(tmp, 'out'),
    '--include-node',
  ]);
  if (pack.code !== 0) throw new Error(`pack-agent failed (${pack.code}): ${pack.stderr}`);
  packed = JSON.parse(pack.stdout) as typeof packed;
  fs.mkdirSync(path.join(tmp, 'opt'));
  const untar = await runProcess('tar', ['-xzf', packed.tarball, '-C', path.join(tmp, 'opt')]);
  if (untar.code !== 0) throw new Error(`tar failed: ${untar.stderr}`);

  fs.mkdirSync(pathWithoutNode);
  for (const tool of ['readlink', 'dirname']) {
    fs.symlinkSync(path.join('/usr/bin', tool), path.join(pathWithoutNode, tool));
  }
  db = await createTestDatabase();
  cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL: SHARED_NATS_URL });
  api = new GraphQLClient(cp.graphqlUrl, (await createOrganization(db.appUrl, 'Bundle Org')).adminToken);
});

afterAll(async () => {
  await agent?.stop();
  await cp?.stop();
  await db?.drop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function installed(args: string[]) {
  return runProcess(launcher, args, { PATH: pathWithoutNode });
}

describe('the agent archive', () => {
  it('matches its checksum file and holds the agent, its production dependencies only, an SBOM and Node', async () => {
    const digest = createHash('sha256').update(fs.readFileSync(packed.tarball)).digest('hex');
    expect(digest).toBe(packed.sha256);
    expect(fs.readFileSync(`${packed.tarball}.sha256`, 'utf8')).toBe(`${digest}  ${name}.tar.gz\n`);

    for (const file of [
      'bin/hearth-agent.js',
      'dist/cli.js',
      'hearth-agent.service',
      'README.md',
      'node/bin/node',
    ]) {
      expect(fs.existsSync(path.join(home, file))).toBe(true);
    }
    const modules = path.join(home, 'node_modules');
    for (const runtime of ['@hearth/contracts', '@nats-io/transport-node', 'onnxruntime-node', 'zod']) {
      expect(fs.existsSync(path.join(modules, runtime, 'package.json'))).toBe(true);
    }
    for (const devOnly of ['jest', 'typescript', '@nats-io/jwt', '@nestjs/core', '@hearth/testing', 'pg']) {
      expect(fs.existsSync(path.join(modules, devOnly))).toBe(false);
    }
    // onnxruntime-node's native binaries for this platform only.
    const ortBin = path.join(modules, 'onnxruntime-node', 'bin', 'napi-v6');
    expect(fs.readdirSync(ortBin)).toEqual([process.platform]);
    expect(fs.readdirSync(path.join(ortBin, process.platform))).toEqual([process.arch]);

    // The SBOM names every package the archive holds, nested ones included, at its version.
    const sbom = JSON.parse(fs.readFileSync(path.join(home, 'sbom.cdx.json'), 'utf8')) as {
      bomFormat: string;
      metadata: { component: { name: string; version: string } };
      components: { name: string; version: string; hashes?: unknown[] }[];
    };
    expect(sbom).toMatchObject({
      bomFormat: 'CycloneDX',
      metadata: { component: { name: '@hearth/agent', version } },
    });
    const shipped = packagesUnder(modules);
    expect(shipped.length).toBe(packed.packages);
    expect(sbom.components.map((c) => `${c.name}@${c.version}`).sort()).toEqual(shipped.sort());
    expect(sbom.components.filter((c) => !c.hashes).map((c) => c.name)).toEqual(['@hearth/contracts']);

    const v = await installed(['--version']);
    expect(v).toMatchObject({ code: 0, stdout: `${version}\n` });
    const node = await runProcess(path.join(home, 'node', 'bin', 'node'), ['--version']);
    expect(node.stdout.trim()).toBe(process.version);
  });

  it('joins a real control plane, runs a command, trains a model and serves it, from outside the repository', async () => {
    const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
      `mutation { createJoinToken { token } }`,
    );
    const dataDir = path.join(tmp, 'var-lib-hearth-agent');
    const join = await installed([
      'join',
      '--url',
      cp.url,
      '--token',
      createJoinToken.token,
      '--data-dir',
      dataDir,
    ]);
    expect(join).toMatchObject({ code: 0, stdout: expect.stringMatching(/joined as agent \S+/) });

    const dataRoot = path.join(tmp, 'data');
    const artifactRoot = path.join(tmp, 'models');
    fs.mkdirSync(dataRoot);
    fs.mkdirSync(artifactRoot);
    const rows = ['x1,x2,label'];
    for (let i = 0; i < 200; i++) {
      const c = i % 2 ? 2 : -2;
      rows.push(`${c + Math.sin(i)},${c + Math.cos(i)},${i % 2 ? 'yes' : 'no'}`);
    }
    fs.writeFileSync(path.join(dataRoot, 'train.csv'), `${rows.join('\n')}\n`);
    const servePort = await freePort();
    fs.writeFileSync(
      path.join(dataDir, 'policy.json'),
      JSON.stringify({ dataRoots: [dataRoot], artifactRoot, serve: { host: '127.0.0.1', port: servePort } }),
    );
    agent = startProcess(
      launcher,
      ['run', '--data-dir', dataDir],
      { PATH: pathWithoutNode },
      'bundled-agent',
    );
    const { agents } = await waitFor(
      async () => {
        const r = await api.ok<{ agents: { state: string; agentVersion: string }[] }>(
          `{ agents { state agentVersion } }`,
        );
        return r.agents[0]?.state === 'ONLINE' && r;
      },
      { what: 'the bundled agent online' },
    );
    expect(agents[0].agentVersion).toBe(version);

    const command = await api.ok<{ submitJob: { id: string } }>(
      `mutation { submitJob(input: { kind: COMMAND, command: ["/bin/sh", "-c", "echo from the archive"] }) { id } }`,
    );
    const ran = await waitForJob<{ state: string; logTail: string }>(
      api,
      command.submitJob.id,
      ['SUCCEEDED', 'FAILED'],
      'state logTail',
      60_000,
    );
    expect(ran).toMatchObject({ state: 'SUCCEEDED', logTail: expect.stringContaining('from the archive') });

    const train = await api.ok<{ submitJob: { id: string } }>(
      `mutation($t: TrainJobInput!) { submitJob(input: { kind: TRAIN, train: $t }) { id } }`,
      {
        t: {
          modelName: 'bundled',
          datasetUri: `file://${path.join(dataRoot, 'train.csv')}`,
          target: 'label',
          task: 'BINARY',
          model: 'LOGISTIC',
          epochs: 5,
          learningRate: 0.1,
          seed: 1,
        },
      },
    );
    const trained = await waitForJob<{ state: string; stateReason: string | null; backend: string | null }>(
      api,
      train.submitJob.id,
      ['SUCCEEDED', 'FAILED'],
      'state stateReason backend',
      120_000,
    );
    expect(trained).toMatchObject({ state: 'SUCCEEDED', backend: 'wasm' });

    const { models } = await api.ok<{ models: { versions: { id: string }[] }[] }>(
      `{ models { versions { id } } }`,
    );
    const { deployModel } = await api.ok<{ deployModel: { id: string } }>(
      `mutation($v: ID!) { deployModel(input: { versionId: $v }) { id } }`,
      { v: models[0].versions[0].id },
    );
    const endpoint = await waitFor(
      async () => {
        const { deployment } = await api.ok<{ deployment: { state: string; endpoint: string | null } }>(
          `query($id: ID!) { deployment(id: $id) { state endpoint } }`,
          { id: deployModel.id },
        );
        if (deployment.state === 'FAILED') throw new Error('deployment failed');
        return deployment.state === 'READY' && deployment.endpoint;
      },
      { timeoutMs: 60_000, what: 'the deployment READY' },
    );
    const res = await fetch(`${endpoint}/v2/models/bundled/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ name: 'input', shape: [2, 2], datatype: 'FP32', data: [2, 2, -2, -2] }],
      }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { outputs: { data: number[] }[] };
    const [yes, no] = body.outputs[0].data; // P(yes) for a "yes" row, then for a "no" row
    expect(yes).toBeGreaterThan(0.5);
    expect(no).toBeLessThan(0.5);
  });
});

describe('the systemd unit', () => {
  /** The unit as shipped, with /opt/hearth-agent pointing at this test's unpacked archive. */
  function unitAt(dir: string): string {
    const unit = path.join(dir, 'hearth-agent.service');
    fs.writeFileSync(
      unit,
      fs.readFileSync(path.join(home, 'hearth-agent.service'), 'utf8').replaceAll('/opt/hearth-agent', home),
    );
    return unit;
  }

  it('passes systemd-analyze verify and rates OK or better for exposure', async () => {
    const unit = unitAt(tmp);
    const verify = await runProcess('systemd-analyze', ['verify', unit]);
    expect(verify).toMatchObject({ code: 0, stderr: '' });
    const security = await runProcess('systemd-analyze', ['security', '--offline=yes', unit]);
    expect(security.code).toBe(0);
    const [, score, rating] = /Overall exposure level for \S+: (\d+\.\d) (\w+)/.exec(security.stdout) ?? [];
    expect(['SAFE', 'OK']).toContain(rating);
    expect(Number(score)).toBeLessThan(5);
  });

  it('lets the agent drain: SIGTERM to the agent alone, and time for the drain and its reports', () => {
    const settings = new Map(
      fs
        .readFileSync(path.join(home, 'hearth-agent.service'), 'utf8')
        .split('\n')
        .filter((l) => /^\w+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(settings.get('KillMode')).toBe('mixed');
    // The drain, then up to 10 s for the killed jobs' reports, then NATS's own drain.
    expect(Number(settings.get('TimeoutStopSec'))).toBeGreaterThan(DEFAULT_DRAIN_SECONDS + 10);
    expect(settings.get('ExecStart')).toBe(
      '/opt/hearth-agent/bin/hearth-agent run --data-dir /var/lib/hearth-agent',
    );
    expect(settings.get('StateDirectory')).toBe('hearth-agent');
    expect(settings.get('RestartPreventExitStatus')).toBe('2');
  });
});

/** name@version of every package in a node_modules tree, nested ones included. */
function packagesUnder(modules: string): string[] {
  const found: string[] = [];
  for (const entry of fs.readdirSync(modules)) {
    if (entry.startsWith('.')) continue;
    const dirs = entry.startsWith('@')
      ? fs.readdirSync(path.join(modules, entry)).map((e) => path.join(modules, entry, e))
      : [path.join(modules, entry)];
    for (const dir of dirs) {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
        name: string;
        version: string;
      };
      found.push(`${pkg.name}@${pkg.version}`);
      if (fs.existsSync(path.join(dir, 'node_modules')))
        found.push(...packagesUnder(path.join(dir, 'node_modules')));
    }
  }
  return found;
}
