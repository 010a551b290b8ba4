/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import onnx from 'onnx-proto';
import {
  identityModel,
  linearRegressionModel,
  treeEnsembleClassifierModel,
  treeEnsembleRegressorModel,
} from '@hearth/testing';
import { externalTensor } from './model-file.js';
import { loadFailureKind, loadModelSession, type ModelSession } from './model-session.js';
import { ServeError } from './serve.errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-model-session-'));
const sessions: ModelSession[] = [];
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.release()));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function load(bytes: Uint8Array, options?: Parameters<typeof loadModelSession>[1]) {
  const file = path.join(dir, `${sessions.length}.onnx`);
  fs.writeFileSync(file, bytes);
  const session = await loadModelSession(file, options);
  sessions.push(session);
  return session;
}

async function loadError(source: string | Uint8Array): Promise<ServeError> {
  const err = await loadModelSession(source).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ServeError);
  expect((err as ServeError).code).toBe('MODEL_LOAD_FAILED');
  return err as ServeError;
}

const f32 = (data: number[], dims: number[]) => new ort.Tensor('float32', Float32Array.from(data), dims);

describe('loadModelSession', () => {
  it('loads a linear model on the CPU and describes it in OIP terms (-1 for dynamic dims)', async () => {
    const session = await load(linearRegressionModel());
    expect(session.executionProvider).toBe('cpu');
    expect(session.inputs).toEqual([{ name: 'float_input', datatype: 'FP32', shape: [-1, 3] }]);
    expect(session.outputs).toEqual([{ name: 'variable', datatype: 'FP32', shape: [-1, 1] }]);
    const out = await session.run({ float_input: f32([1, 2, 4, 0, 0, 0], [2, 3]) }, ['variable']);
    expect(Array.from(out.variable.data as Float32Array)).toEqual([3, 1]);
  });

  it('runs ONNX-ML tree ensembles (regressor and classifier)', async () => {
    const regressor = await load(treeEnsembleRegressorModel());
    const r = await regressor.run({ float_input: f32([0.2, 5, 3, 0], [2, 2]) }, ['variable']);
    expect(Array.from(r.variable.data as Float32Array)).toEqual([1, 3]);

    const classifier = await load(treeEnsembleClassifierModel());
    expect(classifier.outputs).toEqual([
      { name: 'label', datatype: 'INT64', shape: [-1] },
      { name: 'probabilities', datatype: 'FP32', shape: [-1, 3] },
    ]);
    const c = await classifier.run({ input: f32([0, 5], [1, 2]) }, ['label']);
    expect(Object.keys(c)).toEqual(['label']);
    expect(Array.from(c.label.data as BigInt64Array)).toEqual([10n]);
  });

  it('maps every element type to its OIP datatype', async () => {
    const session = await load(
      identityModel([
        { name: 'b', type: 'bool', shape: [2] },
        { name: 'i8', type: 'int8', shape: [1] },
        { name: 'i32', type: 'int32', shape: ['batch', 4] },
        { name: 'i64', type: 'int64', shape: [] },
        { name: 'u16', type: 'uint16', shape: [1] },
        { name: 'u64', type: 'uint64', shape: [1] },
        { name: 'f64', type: 'float64', shape: [1] },
        { name: 's', type: 'string', shape: [-1] },
      ]),
    );
    expect(session.inputs.map((i) => [i.name, i.datatype, i.shape])).toEqual([
      ['b', 'BOOL', [2]],
      ['i8', 'INT8', [1]],
      ['i32', 'INT32', [-1, 4]],
      ['i64', 'INT64', []],
      ['u16', 'UINT16', [1]],
      ['u64', 'UINT64', [1]],
      ['f64', 'FP64', [1]],
      ['s', 'BYTES', [-1]],
    ]);
  });

  it('serves an sklearn ZipMap classifier by its probability tensor, under the same output name', async () => {
    const session = await load(treeEnsembleClassifierModel({ zipmap: true }));
    expect(session.outputs).toEqual([
      { name: 'output_label', datatype: 'INT64', shape: [-1] },
      { name: 'output_probability', datatype: 'FP32', shape: [-1, 3] },
    ]);
    expect(session.conversions).toEqual([
      expect.stringContaining("output 'output_probability': ZipMap removed"),
    ]);
    const out = await session.run({ input: f32([2, 3], [1, 2]) }, ['output_label', 'output_probability']);
    expect(Array.from(out.output_label.data as BigInt64Array)).toEqual([20n]);
    const probabilities = Array.from(out.output_probability.data as Float32Array);
    [0.2, 0.425, 0.375].forEach((p, i) => expect(probabilities[i]).toBeCloseTo(p, 6));
  });

  it('refuses a model with an output that is not a tensor and cannot be converted', async () => {
    const err = await loadError(sequenceOutputModel());
    expect(err.message).toMatch(/^output 'parts' is not a tensor .*options=\{'zipmap': False\}/);
  });

  it('refuses a missing file and bytes that are not a model, with the reason', async () => {
    expect((await loadError(path.join(dir, 'missing.onnx'))).message).toBe(
      `cannot read the model file ${path.join(dir, 'missing.onnx')}: ENOENT`,
    );
    // What onnxruntime says (it may quote the model's own names) stays in the local log.
    expect(await loadError(Uint8Array.from([1, 2, 3, 4]))).toMatchObject({
      message:
        "onnxruntime cannot load the model: the file does not parse as an ONNX model (the agent's log has onnxruntime's message)",
      localDetail: expect.stringMatching(/protobuf parsing failed/),
    });
  });

  it("names the kind of a load failure, never the model's own text", () => {
    expect(loadFailureKind('Unsupported model IR version: 11, max supported IR version: 10')).toBe(
      'its IR version or operator set is not one this onnxruntime supports',
    );
    expect(
      loadFailureKind("Could not find an implementation for SecretOp(1) node with name 'exfil_ssn_123'"),
    ).toBe('it uses an operator or an attribute this onnxruntime does not implement');
    expect(loadFailureKind('[ShapeInferenceError] (op_type:Add, node name: leak_value): incompatible')).toBe(
      'its graph does not check: a type or shape error',
    );
    expect(loadFailureKind('Node (anything_here) output arg (x) type inference failed')).toBe(
      'its graph does not check: a type or shape error',
    );
    expect(loadFailureKind('something new')).toBe('onnxruntime refused it');
  });

  it('never reads a file the model names as external data, even where the model check cannot see it', async () => {
    // A "secret" within the working directory: onnxruntime resolves a model-from-bytes' external
    // data against it (the agent's is / under systemd).
    fs.mkdirSync(path.join(process.cwd(), '.tmp'), { recursive: true });
    const scratch = fs.mkdtempSync(path.join(process.cwd(), '.tmp', 'external-data-'));
    try {
      const secret = path.join(scratch, 'agent.seed');
      fs.writeFileSync(secret, 'NATS-SEED');
      const { TensorProto } = onnx.onnx;
      const u8 = TensorProto.DataType.UINT8;
      const info = (name: string, elemType: number, dims: number[]) => ({
        name,
        type: { tensorType: { elemType, shape: { dim: dims.map((dimValue) => ({ dimValue })) } } },
      });
      // Two graph fields: protobuf merges them (onnxruntime), protobufjs keeps the last (model-file.ts).
      const hidden = onnx.onnx.ModelProto.encode({
        graph: {
          initializer: [
            {
              name: 'secret',
              dims: [9],
              dataType: u8,
              dataLocation: TensorProto.DataLocation.EXTERNAL,
              externalData: [{ key: 'location', value: path.relative(process.cwd(), secret) }],
            },
          ],
        },
      }).finish();
      const visible = onnx.onnx.ModelProto.encode({
        irVersion: 8,
        opsetImport: [{ domain: '', version: 15 }],
        graph: {
          name: 'g',
          node: [
            { opType: 'Identity', input: ['secret'], output: ['out'] },
            { opType: 'Identity', input: ['x'], output: ['y'] },
          ],
          input: [info('x', TensorProto.DataType.FLOAT, [1])],
          output: [info('out', u8, [9]), info('y', TensorProto.DataType.FLOAT, [1])],
        },
      }).finish();
      const bytes = Buffer.concat([hidden, visible]);
      expect(externalTensor(onnx.onnx.ModelProto.decode(bytes))).toBeNull();

      // onnxruntime as the agent used to create sessions reads the file…
      const unguarded = await ort.InferenceSession.create(bytes, { logSeverityLevel: 4 });
      const x = new ort.Tensor('float32', new Float32Array([0]), [1]);
      const leaked = (await unguarded.run({ x }, ['out'])).out.data as Uint8Array;
      expect(Buffer.from(leaked).toString()).toBe('NATS-SEED');
      await unguarded.release();
      // …and as it does now, finds nothing to read.
      expect(await loadError(bytes)).toMatchObject({
        message:
          "onnxruntime cannot load the model: it keeps tensors in external data files, which the agent does not load (the agent's log has onnxruntime's message)",
        localDetail: expect.stringMatching(/External data path/),
      });
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('falls back to the CPU, saying why, when CUDA is asked for but cannot start', async () => {
    // This machine has no CUDA provider library: asking for CUDA must not fail the load.
    const session = await load(linearRegressionModel(), { cuda: true });
    if (session.executionProvider === 'cuda') return; // a machine with CUDA installed: nothing to check
    expect(session.executionProvider).toBe('cpu');
    expect(session.cudaFallbackReason).toMatch(/cuda/i);
    const out = await session.run({ float_input: f32([-1, 1, 2], [1, 3]) }, ['variable']);
    expect(Array.from(out.variable.data as Float32Array)).toEqual([-1]);
  });
});

/** x float [2] → SequenceConstruct(x, x) → `parts`, a seq(tensor(float)). */
function sequenceOutputModel(): Uint8Array {
  const p = onnx.onnx;
  const float = p.TensorProto.DataType.FLOAT;
  return p.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 15 }],
    graph: {
      name: 'sequence',
      node: [{ opType: 'SequenceConstruct', input: ['x', 'x'], output: ['parts'] }],
      input: [{ name: 'x', type: { tensorType: { elemType: float, shape: { dim: [{ dimValue: 2 }] } } } }],
      output: [{ name: 'parts', type: { sequenceType: { elemType: { tensorType: { elemType: float } } } } }],
    },
  }).finish();
}
