import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { ensureBackend } from './backend.js';
import { directorySaver, MODEL_JSON, WEIGHTS_BIN } from './tfjs-save.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-tfjs-save-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
beforeAll(async () => {
  await ensureBackend();
});

describe('directorySaver', () => {
  it('writes model.json + weights.bin (0600) that TensorFlow.js loads back to the same predictions', async () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.dense({
          inputShape: [3],
          units: 4,
          activation: 'relu',
          kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }),
        }),
        tfl.layers.dense({
          units: 2,
          activation: 'softmax',
          kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }),
        }),
      ],
    });
    model.setUserDefinedMetadata({ hearth: { labels: ['a', 'b'] } });
    const dir = path.join(root, 'model');
    const result = await model.save(directorySaver(dir));
    expect(result.modelArtifactsInfo.weightDataBytes).toBe((3 * 4 + 4 + 4 * 2 + 2) * 4);

    expect(fs.readdirSync(dir).sort()).toEqual([MODEL_JSON, WEIGHTS_BIN]);
    for (const file of [MODEL_JSON, WEIGHTS_BIN])
      expect(fs.statSync(path.join(dir, file)).mode & 0o777).toBe(0o600);
    const json = JSON.parse(fs.readFileSync(path.join(dir, MODEL_JSON), 'utf8')) as tf.io.ModelJSON;
    const weights = fs.readFileSync(path.join(dir, WEIGHTS_BIN));
    expect(json.format).toBe('layers-model');
    expect(json.weightsManifest).toEqual([{ paths: ['./weights.bin'], weights: expect.any(Array) }]);
    expect(json.userDefinedMetadata).toEqual({
      hearth: { labels: ['a', 'b'] },
      weightsSha256: createHash('sha256').update(weights).digest('hex'),
    });

    const loaded = await tfl.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json.modelTopology,
        weightSpecs: json.weightsManifest[0].weights,
        weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
      }),
    );
    const x = tf.tensor2d([
      [0.5, -1, 2],
      [3, 0, -0.25],
    ]);
    expect(await (loaded.predict(x) as tf.Tensor).data()).toEqual(
      await (model.predict(x) as tf.Tensor).data(),
    );
  });
});
