import { afterAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModelArtifact } from '@hearth/contracts';
import { denseSignature, describeArtifact, fileDigest } from './artifacts.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-artifacts-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('artifacts', () => {
  it('hashes a file and describes it with a file:// URI, size and signature the contract accepts', async () => {
    const main = path.join(root, 'model json.json');
    const weights = path.join(root, 'weights.bin');
    fs.writeFileSync(main, '{"a":1}');
    fs.writeFileSync(weights, Buffer.alloc(1000, 7));
    expect(await fileDigest(weights)).toEqual({
      sha256: createHash('sha256').update(Buffer.alloc(1000, 7)).digest('hex'),
      sizeBytes: 1000,
    });

    const artifact = await describeArtifact('tfjs', main, denseSignature(5, 3), [weights]);
    expect(artifact).toEqual({
      uri: `file://${root.split(path.sep).map(encodeURIComponent).join('/')}/model%20json.json`,
      sha256: createHash('sha256').update('{"a":1}').digest('hex'),
      sizeBytes: 1007,
      format: 'tfjs',
      signature: {
        inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 5] }],
        outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 3] }],
      },
    });
    expect(ModelArtifact.safeParse(artifact).success).toBe(true);
  });
});
