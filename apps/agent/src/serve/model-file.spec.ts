import { afterAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import onnx from 'onnx-proto';
import { linearRegressionModel } from '@hearth/testing';
import { ModelFileError, readVerifiedModel, recordedFeatureNames } from './model-file.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-model-file-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function write(name: string, bytes: Uint8Array): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
}

function withMetadata(bytes: Uint8Array, metadata: Record<string, string>): Uint8Array {
  const model = onnx.onnx.ModelProto.decode(bytes);
  model.metadataProps = Object.entries(metadata).map(([key, value]) => ({ key, value }));
  return onnx.onnx.ModelProto.encode(model).finish();
}

describe('readVerifiedModel', () => {
  it('returns the bytes it checked, with the model metadata', async () => {
    const bytes = withMetadata(linearRegressionModel(), { 'hearth.featureNames': '["a","b","c"]' });
    const model = await readVerifiedModel(write('ok.onnx', bytes), 'file:///m/ok.onnx', sha256(bytes));
    expect(Buffer.from(model.bytes).equals(Buffer.from(bytes))).toBe(true);
    expect(model.sha256).toBe(sha256(bytes));
    expect(recordedFeatureNames(model.metadata)).toEqual(['a', 'b', 'c']);
  });

  it('refuses a file whose sha256 is not the pinned one, naming both', async () => {
    const bytes = linearRegressionModel();
    const pinned = 'a'.repeat(64);
    await expect(
      readVerifiedModel(write('changed.onnx', bytes), 'file:///m/changed.onnx', pinned),
    ).rejects.toThrow(
      new ModelFileError(
        `the model file:///m/changed.onnx has sha256 ${sha256(bytes)}, not the ${pinned} this job pins: ` +
          'the file changed since that model version was registered',
      ),
    );
  });

  it('refuses a model that keeps a tensor in an external data file, wherever the tensor is', async () => {
    const { TensorProto, AttributeProto } = onnx.onnx;
    // onnxruntime would read this path against the agent's working directory (/ under systemd).
    const external = (name: string): onnx.onnx.ITensorProto => ({
      name,
      dims: [64],
      dataType: TensorProto.DataType.UINT8,
      dataLocation: TensorProto.DataLocation.EXTERNAL,
      externalData: [{ key: 'location', value: 'var/lib/hearth-agent/agent.seed' }],
    });
    const check = (mutate: (model: onnx.onnx.ModelProto) => void) => {
      const model = onnx.onnx.ModelProto.decode(linearRegressionModel());
      mutate(model);
      const bytes = onnx.onnx.ModelProto.encode(model).finish();
      return readVerifiedModel(write('external.onnx', bytes), 'file:///m/external.onnx', sha256(bytes));
    };
    await expect(check((m) => m.graph!.initializer!.push(external('seed')))).rejects.toThrow(
      new ModelFileError(
        'the model file:///m/external.onnx keeps a tensor in an external data file, which the agent ' +
          'does not load: save the model with its weights inside it (onnx.save_model(model, path, ' +
          "save_as_external_data=False)); a model over protobuf's 2 GB limit cannot be served here",
      ),
    );
    // A Constant inside an If's branch, and a location given without the data_location flag.
    const branch = {
      name: 'then',
      node: [
        {
          opType: 'Constant',
          output: ['c'],
          attribute: [{ name: 'value', type: AttributeProto.AttributeType.TENSOR, t: external('hidden') }],
        },
      ],
    };
    await expect(
      check((m) =>
        m.graph!.node!.push({
          opType: 'If',
          input: ['cond'],
          output: ['c'],
          attribute: [
            { name: 'then_branch', type: AttributeProto.AttributeType.GRAPH, g: branch },
            { name: 'else_branch', type: AttributeProto.AttributeType.GRAPH, g: branch },
          ],
        }),
      ),
    ).rejects.toThrow(/keeps a tensor in an external data file/);
    await expect(
      check((m) =>
        m.graph!.sparseInitializer!.push({
          values: { ...external('sparse'), dataLocation: TensorProto.DataLocation.DEFAULT },
          dims: [64],
        }),
      ),
    ).rejects.toThrow(/keeps a tensor in an external data file/);
  });

  it('refuses bytes that are not an ONNX model, saying why', async () => {
    const check = (bytes: Uint8Array) =>
      readVerifiedModel(write('bad.onnx', bytes), 'file:///m/bad.onnx', sha256(bytes));
    await expect(check(Uint8Array.from([8, 1, 2, 3]))).rejects.toThrow(
      /^the model file:\/\/\/m\/bad\.onnx is not a valid ONNX model: it does not decode as an ONNX ModelProto/,
    );
    await expect(check(new TextEncoder().encode('hello'))).rejects.toThrow(ModelFileError);
    const truncated = linearRegressionModel().subarray(0, 40);
    await expect(check(truncated)).rejects.toThrow(/is not a valid ONNX model/);
    await expect(check(onnx.onnx.ModelProto.encode({ irVersion: 8 }).finish())).rejects.toThrow(
      'the model file:///m/bad.onnx is not a valid ONNX model: it has no graph',
    );
  });

  it('says when the file cannot be read', async () => {
    await expect(
      readVerifiedModel(path.join(dir, 'absent.onnx'), 'file:///m/absent.onnx', 'a'.repeat(64)),
    ).rejects.toThrow('cannot read the model file:///m/absent.onnx (ENOENT)');
  });
});

describe('recordedFeatureNames', () => {
  it('is null for models without usable hearth.featureNames', () => {
    expect(recordedFeatureNames({})).toBeNull();
    expect(recordedFeatureNames({ 'hearth.featureNames': 'not json' })).toBeNull();
    expect(recordedFeatureNames({ 'hearth.featureNames': '[]' })).toBeNull();
    expect(recordedFeatureNames({ 'hearth.featureNames': '[1,2]' })).toBeNull();
  });
});
