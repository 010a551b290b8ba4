import { afterAll, describe, expect, it } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { JobDispatch, ModelRef } from '@hearth/contracts';
import { jobDispatch, linearRegressionModel } from '@hearth/testing';
import { parseLocalPolicy, type LocalPolicy } from '../policy/local-policy.js';
import { verifyJob } from './verify-job.js';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-verify-')));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const dataRoot = path.join(tmp, 'data');
const artifactRoot = path.join(tmp, 'artifacts');
fs.mkdirSync(dataRoot);
fs.mkdirSync(artifactRoot);
const datasetPath = path.join(dataRoot, 'score.csv');
fs.writeFileSync(datasetPath, 'a,b,c\n1,2,3\n');
const dataset = pathToFileURL(datasetPath).href;
const outsideDataset = pathToFileURL(path.join(tmp, 'elsewhere.csv')).href;

const modelBytes = linearRegressionModel();
const modelPath = path.join(artifactRoot, 'model.onnx');
fs.writeFileSync(modelPath, modelBytes);
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const goodModel: ModelRef = {
  name: 'm',
  version: '1',
  uri: pathToFileURL(modelPath).href,
  sha256: sha256(modelBytes),
};

const filePath = 'policy.json';
const full: LocalPolicy = parseLocalPolicy({ dataRoots: [dataRoot], artifactRoot }, filePath);
const noArtifacts: LocalPolicy = parseLocalPolicy({ dataRoots: [dataRoot] }, filePath);

const trainJob = (uri: string): JobDispatch =>
  jobDispatch({
    kind: 'train',
    train: {
      dataset: { uri },
      target: 'c',
      task: 'regression',
      model: { type: 'linear' },
      epochs: 1,
      batchSize: 32,
      learningRate: 0.01,
      validationSplit: 0,
      seed: 0,
    },
  });
const serveJob = (model: ModelRef): JobDispatch =>
  jobDispatch({ kind: 'serve', serve: { deploymentId: randomUUID(), model } });
const predictJob = (model: ModelRef, uri = dataset): JobDispatch =>
  jobDispatch({ kind: 'batch_predict', batchPredict: { model, input: { uri } } });

const searchPath = process.env.PATH ?? '/usr/bin:/bin';
const verify = (job: JobDispatch, policy = full) => verifyJob(job, policy, searchPath);
const reason = async (job: JobDispatch, policy = full) => {
  const verdict = await verify(job, policy);
  return verdict.ok ? null : verdict.reason;
};

describe('verifyJob', () => {
  it('passes jobs the policy allows, with the checked model bytes and the resolved input', async () => {
    // A command's program is found on the agent's PATH, and started by that absolute path.
    expect(await verify(jobDispatch({ kind: 'command', command: ['true'] }), noArtifacts)).toMatchObject({
      ok: true,
      verified: { kind: 'command', executable: expect.stringMatching(/^\/.*\/true$/) },
    });
    expect(await verify(trainJob(dataset), full)).toMatchObject({ ok: true, verified: { kind: 'train' } });
    const serve = await verify(serveJob(goodModel), full);
    expect(serve.ok && serve.verified.kind === 'serve' && sha256(serve.verified.model.bytes)).toBe(
      goodModel.sha256,
    );
    expect(await verify(predictJob(goodModel), full)).toMatchObject({
      ok: true,
      verified: { kind: 'batch_predict', inputPath: datasetPath },
    });
  });

  it('refuses datasets outside the data roots, and writing kinds without an artifact root', async () => {
    expect(await reason(trainJob(outsideDataset))).toMatch(
      /^the dataset .*elsewhere\.csv is outside the data roots/,
    );
    expect(await reason(predictJob(goodModel, outsideDataset))).toMatch(/is outside the data roots/);
    expect(await reason(trainJob(dataset), noArtifacts)).toBe(
      'no artifact root is configured on this agent, so a train job cannot save its model: set "artifactRoot" ' +
        'to a directory in policy.json',
    );
    expect(await reason(predictJob(goodModel), noArtifacts)).toMatch(
      /so a batch_predict job cannot write its predictions/,
    );
    expect(await reason(serveJob(goodModel), noArtifacts)).toMatch(/so no model may be loaded/);
  });

  it('refuses command jobs where the policy turns them off, and only them', async () => {
    const noCommands = parseLocalPolicy(
      { dataRoots: [dataRoot], artifactRoot, commands: { enabled: false } },
      filePath,
    );
    expect(await reason(jobDispatch({ kind: 'command', command: ['true'] }), noCommands)).toBe(
      'this agent\'s local policy does not allow command jobs ("commands.enabled": false in policy.json); ' +
        'it runs train, batch_predict and serve jobs only',
    );
    expect(await verify(trainJob(dataset), noCommands)).toMatchObject({ ok: true });
    expect(() => parseLocalPolicy({ commands: { enabled: 'no' } }, filePath)).toThrow(
      /invalid at commands.enabled: Invalid input: expected boolean/,
    );
    // The first spelling of the switch still works.
    const legacy = parseLocalPolicy({ commandJobs: false }, filePath);
    expect(await reason(jobDispatch({ kind: 'command', command: ['true'] }), legacy)).toMatch(
      /does not allow command jobs/,
    );
  });

  it('refuses a model outside the artifact root, with another sha256, or not ONNX', async () => {
    const stray = path.join(dataRoot, 'stray.onnx');
    fs.writeFileSync(stray, modelBytes);
    expect(await reason(serveJob({ ...goodModel, uri: pathToFileURL(stray).href }))).toMatch(
      /^the model .*stray\.onnx is outside the artifact root of this agent/,
    );
    expect(await reason(serveJob({ ...goodModel, sha256: 'f'.repeat(64) }))).toBe(
      `the model ${goodModel.uri} has sha256 ${goodModel.sha256}, not the ${'f'.repeat(64)} this job pins: ` +
        'the file changed since that model version was registered',
    );
    const garbage = new TextEncoder().encode('definitely not a protobuf, just text');
    const corrupt = path.join(artifactRoot, 'corrupt.onnx');
    fs.writeFileSync(corrupt, garbage);
    expect(
      await reason(predictJob({ ...goodModel, uri: pathToFileURL(corrupt).href, sha256: sha256(garbage) })),
    ).toMatch(/^the model .*corrupt\.onnx is not a valid ONNX model: /);
  });
});
