/**
 * Describes saved models for the control plane: where they are (a file:// URI on the agent), their
 * sha256 and size, and their input/output signature. Only this metadata leaves the agent.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { ModelArtifact, ModelFormat, ModelSignature } from '@hearth/contracts';
import { INPUT_NAME, OUTPUT_NAME } from './onnx-export.js';

export async function fileDigest(filePath: string): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of fs.createReadStream(filePath)) {
    hash.update(chunk as Buffer);
    sizeBytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), sizeBytes };
}

/**
 * The artifact whose main file is `mainFile` (its URI and sha256); sizeBytes counts `otherFiles`
 * too (a TF.js model's weights.bin, whose hash model.json records).
 */
export async function describeArtifact(
  format: ModelFormat,
  mainFile: string,
  signature: ModelSignature,
  otherFiles: readonly string[] = [],
): Promise<ModelArtifact> {
  const main = await fileDigest(mainFile);
  let sizeBytes = main.sizeBytes;
  for (const file of otherFiles) sizeBytes += (await fs.promises.stat(file)).size;
  return { uri: pathToFileURL(mainFile).href, sha256: main.sha256, sizeBytes, format, signature };
}

/** The trainer's models: float32 [batch, features] in, float32 [batch, outputs] out. */
export function denseSignature(featureCount: number, outputUnits: number): ModelSignature {
  return {
    inputs: [{ name: INPUT_NAME, datatype: 'FP32', shape: [-1, featureCount] }],
    outputs: [{ name: OUTPUT_NAME, datatype: 'FP32', shape: [-1, outputUnits] }],
  };
}
