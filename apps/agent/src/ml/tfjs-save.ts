/**
 * Saves a TensorFlow.js layers model to a directory as model.json + weights.bin, the layout
 * tf.loadLayersModel reads (the file:// handler of tfjs-node does the same; that package cannot be
 * assumed here). model.json also records weights.bin's sha256 (userDefinedMetadata.weightsSha256),
 * so a hash of model.json covers the weights too. Files are written 0600.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { io } from '@tensorflow/tfjs-core';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';

export function directorySaver(dir: string): io.IOHandler {
  return {
    save: async (artifacts: io.ModelArtifacts): Promise<io.SaveResult> => {
      if (artifacts.modelTopology instanceof ArrayBuffer || artifacts.modelTopology === undefined) {
        throw new Error('only layers models with a JSON topology can be saved to a directory');
      }
      const weights = new Uint8Array(io.CompositeArrayBuffer.join(artifacts.weightData ?? []));
      const weightsSha256 = createHash('sha256').update(weights).digest('hex');
      const modelJson: io.ModelJSON = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        weightsManifest: [{ paths: [`./${WEIGHTS_BIN}`], weights: artifacts.weightSpecs ?? [] }],
        ...(artifacts.trainingConfig ? { trainingConfig: artifacts.trainingConfig } : {}),
        userDefinedMetadata: { ...artifacts.userDefinedMetadata, weightsSha256 },
      };
      await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
      await fs.promises.writeFile(path.join(dir, WEIGHTS_BIN), weights, { mode: 0o600 });
      await fs.promises.writeFile(path.join(dir, MODEL_JSON), JSON.stringify(modelJson), { mode: 0o600 });
      return { modelArtifactsInfo: io.getModelArtifactsInfoForJSON(artifacts) };
    },
  };
}
