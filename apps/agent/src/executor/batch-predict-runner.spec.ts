/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 *
 * batch_predict in a process of its own (the build's ml/batch-predict-process.js, which the test
 * command builds before these run): the same result as in the agent's process, an event loop that
 * goes on while a slow model runs, a cancel that stops it at once, and errors as the job's reasons.
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { cancelledWhileWatched, linearRegressionModel, slowLoopModel } from '@hearth/testing';
import { parseLocalPolicy } from '../policy/local-policy.js';
import { readVerifiedModel } from '../serve/model-file.js';
import { runBatchPredict, type BatchPredictJob } from './batch-predict-runner.js';
import { JobError } from './in-process-run.js';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-batch-runner-')));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const dataRoot = path.join(tmp, 'data');
const artifactRoot = path.join(tmp, 'artifacts');
fs.mkdirSync(dataRoot);
fs.mkdirSync(artifactRoot);
const policy = parseLocalPolicy({ dataRoots: [dataRoot], artifactRoot }, '/etc/hearth/policy.json');
const logged: { level: number; msg: string; detail?: string }[] = [];
const logger = pino({ level: 'info' }, { write: (line: string) => logged.push(JSON.parse(line)) });

async function job(model: Uint8Array, rows: string) {
  const name = randomUUID();
  const modelPath = path.join(artifactRoot, `${name}.onnx`);
  fs.writeFileSync(modelPath, model);
  const inputPath = path.join(dataRoot, `${name}.csv`);
  fs.writeFileSync(inputPath, rows);
  const sha256 = createHash('sha256').update(model).digest('hex');
  const uri = pathToFileURL(modelPath).href;
  const dispatch = {
    jobId: randomUUID(),
    attemptId: randomUUID(),
    batchPredict: {
      model: { name: 'm', version: '1', uri, sha256 },
      input: { uri: pathToFileURL(inputPath).href },
    },
  } as unknown as BatchPredictJob;
  return { dispatch, verified: { model: await readVerifiedModel(modelPath, uri, sha256), inputPath } };
}

const attemptDir = (dispatch: BatchPredictJob) => path.join(artifactRoot, dispatch.jobId, dispatch.attemptId);

describe('runBatchPredict', () => {
  it('scores in a process of its own and reports what batchPredict reports', async () => {
    const { dispatch, verified } = await job(linearRegressionModel(), 'a,b,c\n1,2,4\n0,0,0\n-1,1,2\n');
    const outcome = await runBatchPredict(dispatch, verified, {
      policy,
      signal: new AbortController().signal,
      logger,
    });
    expect(outcome.result).toMatchObject({ kind: 'batch_predict', batchPredict: { rows: 3 } });
    const written = fs.readFileSync(path.join(attemptDir(dispatch), 'predictions.jsonl'), 'utf8');
    expect(
      written
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual([{ variable: [3] }, { variable: [1] }, { variable: [-1] }]);
  });

  it("keeps the agent's event loop free while a slow model runs, and a cancel stops it at once", async () => {
    // Each run of this model takes minutes; in the agent's process it held the loop throughout.
    const { dispatch, verified } = await job(slowLoopModel(1_000_000), 'a\n1\n2\n');
    const reason = new Error('cancelled by the control plane');
    const run = await cancelledWhileWatched(
      (signal) => runBatchPredict(dispatch, verified, { policy, signal, logger }),
      1500,
      reason,
    );
    expect(run).toMatchObject({ settled: 'rejected', error: reason });
    expect(run.ms).toBeLessThan(5_000);
    expect(run.longestGapMs).toBeLessThan(500);
    expect(fs.existsSync(attemptDir(dispatch))).toBe(false);
  });

  it("gives the job's input errors as its reason, what names the model's own text to the local log only", async () => {
    const { dispatch, verified } = await job(linearRegressionModel(), 'a,b\n1,2\n');
    const err = await runBatchPredict(dispatch, verified, {
      policy,
      signal: new AbortController().signal,
      logger,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobError);
    expect((err as Error).message).toBe(
      'the model takes 3 features per row, but 2 columns were chosen (every column of the file): ' +
        `name the model's 3 input columns, in order, with "features"`,
    );
    expect(logged).toContainEqual(
      expect.objectContaining({ level: 40, detail: 'the columns chosen are "a", "b"' }),
    );
    expect(fs.existsSync(attemptDir(dispatch))).toBe(false);
  });
});
