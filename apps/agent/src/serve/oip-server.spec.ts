/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 *
 * The protocol: the server on an ephemeral port, answered by real HTTP requests, serving real
 * onnxruntime sessions of models built in the test. Deployments are in oip-server.deploy.spec.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  identityModel,
  linearRegressionModel,
  treeEnsembleClassifierModel,
  treeEnsembleRegressorModel,
  waitFor,
} from '@hearth/testing';
import { createLogger } from '../logger.js';
import { AGENT_VERSION } from '../version.js';
import { ModelRepository } from './model-repository.js';
import { startOipServer, type OipServer } from './oip-server.js';
import { ServeMetrics } from './serve-metrics.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-oip-server-'));
const file = (name: string, bytes: Uint8Array) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
};

const MAX_BODY = 64 * 1024;
let repository: ModelRepository;
let server: OipServer;

beforeAll(async () => {
  repository = new ModelRepository();
  await Promise.all([
    repository.load('linear', '1', file('linear.onnx', linearRegressionModel())),
    repository.load('regressor', '3', file('regressor.onnx', treeEnsembleRegressorModel())),
    repository.load('classifier', '1', file('classifier.onnx', treeEnsembleClassifierModel())),
    repository.load(
      'types',
      '1',
      file(
        'types.onnx',
        identityModel([
          { name: 'i64', type: 'int64', shape: ['n'] },
          { name: 'flag', type: 'bool', shape: [2] },
          { name: 'text', type: 'string', shape: ['n'] },
          { name: 'half', type: 'float16', shape: [3] },
          { name: 'byte', type: 'uint8', shape: [] },
        ]),
      ),
    ),
  ]);
  server = await startOipServer({
    host: '127.0.0.1',
    port: 0,
    repository,
    metrics: new ServeMetrics(),
    logger: createLogger('silent'),
    maxBodyBytes: MAX_BODY,
  });
});

afterAll(async () => {
  await server?.close(1000);
  await repository?.close({ force: true });
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

async function call(method: string, urlPath: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}${urlPath}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body:
      body === undefined || typeof body === 'string' || body instanceof Uint8Array
        ? body
        : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {}, headers: res.headers } as Reply;
}

const infer = (model: string, body: unknown, version?: string) =>
  call('POST', `/v2/models/${model}${version ? `/versions/${version}` : ''}/infer`, body);

const linearInput = (data: unknown, shape: unknown = [1, 3], extra: Record<string, unknown> = {}) => ({
  inputs: [{ name: 'float_input', shape, datatype: 'FP32', data, ...extra }],
});

describe('OIP v2 server: health and metadata', () => {
  it('serves server metadata, liveness and readiness', async () => {
    expect(await call('GET', '/v2')).toMatchObject({
      status: 200,
      body: { name: 'hearth-agent', version: AGENT_VERSION, extensions: ['binary_tensor_data'] },
    });
    expect((await call('GET', '/v2/')).status).toBe(200);
    expect(await call('GET', '/v2/health/live')).toMatchObject({ status: 200, body: { live: true } });
    expect(await call('GET', '/v2/health/ready')).toMatchObject({ status: 200, body: { ready: true } });
    const head = await fetch(`${server.url}/v2/health/ready`, { method: 'HEAD' });
    expect(head.status).toBe(200);
  });

  it('describes a model, by name and by version', async () => {
    const expected = {
      name: 'classifier',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [
        { name: 'label', datatype: 'INT64', shape: [-1] },
        { name: 'probabilities', datatype: 'FP32', shape: [-1, 3] },
      ],
    };
    expect(await call('GET', '/v2/models/classifier')).toMatchObject({ status: 200, body: expected });
    expect(await call('GET', '/v2/models/classifier/versions/1')).toMatchObject({
      status: 200,
      body: expected,
    });
    expect(await call('GET', '/v2/models/classifier/versions/2')).toMatchObject({
      status: 404,
      body: { error: "model 'classifier' has no version '2' (serving '1')" },
    });
    expect(await call('GET', '/v2/models/nope')).toMatchObject({
      status: 404,
      body: { error: "model 'nope' is not served here" },
    });
  });

  it('answers model readiness by name and by version', async () => {
    expect(await call('GET', '/v2/models/linear/ready')).toMatchObject({
      status: 200,
      body: { name: 'linear', ready: true },
    });
    expect((await call('GET', '/v2/models/linear/versions/1/ready')).status).toBe(200);
    expect((await call('GET', '/v2/models/linear/versions/9/ready')).status).toBe(404);
    expect((await call('GET', '/v2/models/nope/ready')).status).toBe(404);
  });
});

describe('OIP v2 server: inference', () => {
  it('runs the linear model on nested data and echoes the request id', async () => {
    const reply = await infer('linear', {
      id: 'req-42',
      inputs: [
        {
          name: 'float_input',
          shape: [3, 3],
          datatype: 'FP32',
          data: [
            [1, 2, 4],
            [0, 0, 0],
            [-1, 1, 2],
          ],
        },
      ],
    });
    expect(reply.status).toBe(200);
    expect(reply.headers.get('content-type')).toBe('application/json');
    expect(reply.body).toEqual({
      model_name: 'linear',
      model_version: '1',
      id: 'req-42',
      outputs: [{ name: 'variable', datatype: 'FP32', shape: [3, 1], data: [3, 1, -1] }],
    });
  });

  it('runs the versioned route on flat data, and leaves out id when none was sent', async () => {
    const reply = await infer('linear', linearInput([1, 2, 4, -1, 1, 2], [2, 3]), '1');
    expect(reply.body).toEqual({
      model_name: 'linear',
      model_version: '1',
      outputs: [{ name: 'variable', datatype: 'FP32', shape: [2, 1], data: [3, -1] }],
    });
  });

  it('runs the tree ensemble regressor (TreeEnsembleRegressor, BRANCH_LEQ)', async () => {
    const reply = await infer('regressor', {
      inputs: [
        {
          name: 'float_input',
          shape: [5, 2],
          datatype: 'FP32',
          data: [0.2, 5, 0.5, 1, 3, 2, 3, 0, 3, 9],
        },
      ],
    });
    expect(reply.status).toBe(200);
    expect(reply.body).toMatchObject({ model_name: 'regressor', model_version: '3' });
    expect(reply.body.outputs).toEqual([
      { name: 'variable', datatype: 'FP32', shape: [5, 1], data: [1, 2, 2, 3, 3] },
    ]);
  });

  it('runs the tree ensemble classifier: int64 labels and float probabilities', async () => {
    const reply = await infer('classifier', {
      inputs: [
        {
          name: 'input',
          shape: [5, 2],
          datatype: 'FP32',
          data: [
            [0, 5],
            [2, 3],
            [0, 0],
            [2, -1],
            [1, 0.5],
          ],
        },
      ],
    });
    expect(reply.status).toBe(200);
    const [label, probabilities] = reply.body.outputs as { name: string; shape: number[]; data: number[] }[];
    expect(label).toEqual({ name: 'label', datatype: 'INT64', shape: [5], data: [10, 20, 30, 30, 30] });
    expect(probabilities).toMatchObject({ name: 'probabilities', datatype: 'FP32', shape: [5, 3] });
    const expected = [0.6, 0.4, 0, 0.2, 0.425, 0.375, 0.4, 0.1, 0.5, 0.05, 0.3, 0.65, 0.4, 0.1, 0.5];
    expected.forEach((p, i) => expect(probabilities.data[i]).toBeCloseTo(p, 6));
  });

  it('returns only the outputs asked for, in the order asked', async () => {
    const reply = await infer('classifier', {
      inputs: [{ name: 'input', shape: [1, 2], datatype: 'FP32', data: [2, 3] }],
      outputs: [{ name: 'label' }],
    });
    expect(reply.body.outputs).toEqual([{ name: 'label', datatype: 'INT64', shape: [1], data: [20] }]);
  });

  it('carries INT64 (every digit), BOOL, BYTES, FP16 and scalar UINT8 tensors both ways', async () => {
    const reply = await infer('types', {
      inputs: [
        { name: 'i64', shape: [2], datatype: 'INT64', data: [-9007199254740991, 42] },
        { name: 'flag', shape: [2], datatype: 'BOOL', data: [true, false] },
        { name: 'text', shape: [2], datatype: 'BYTES', data: ['héllo', ''] },
        { name: 'half', shape: [3], datatype: 'FP16', data: [1.5, -0.1, 65504] },
        { name: 'byte', shape: [], datatype: 'UINT8', data: [255] },
      ],
    });
    expect(reply.status).toBe(200);
    expect(reply.body.outputs).toEqual([
      { name: 'i64_out', datatype: 'INT64', shape: [2], data: [-9007199254740991, 42] },
      { name: 'flag_out', datatype: 'BOOL', shape: [2], data: [true, false] },
      { name: 'text_out', datatype: 'BYTES', shape: [2], data: ['héllo', ''] },
      // -0.1 has no exact half: the nearest is -0.0999755859375.
      { name: 'half_out', datatype: 'FP16', shape: [3], data: [1.5, -0.0999755859375, 65504] },
      { name: 'byte_out', datatype: 'UINT8', shape: [], data: [255] },
    ]);
  });
});

/** A binary tensor data request: the JSON header, then the parts, with the header's length. */
async function inferBinary(model: string, header: unknown, parts: Buffer[], declared?: string) {
  const json = Buffer.from(JSON.stringify(header));
  const res = await fetch(`${server.url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': declared ?? String(json.length),
    },
    body: Buffer.concat([json, ...parts]),
  });
  const body = Buffer.from(await res.arrayBuffer());
  const length = res.headers.get('inference-header-content-length');
  const head = length === null ? body : body.subarray(0, Number(length));
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    body: JSON.parse(head.toString('utf8')) as Record<string, unknown>,
    binary: length === null ? null : body.subarray(Number(length)),
  };
}

const f32 = (...v: number[]) => Buffer.from(new Float32Array(v).buffer);
const i64 = (...v: bigint[]) => Buffer.from(new BigInt64Array(v).buffer);
const strings = (...v: string[]) =>
  Buffer.concat(
    v.flatMap((s) => {
      const text = Buffer.from(s);
      const length = Buffer.alloc(4);
      length.writeUInt32LE(text.length);
      return [length, text];
    }),
  );

describe('OIP v2 server: binary tensor data extension', () => {
  it('takes binary inputs and answers as the same request in JSON does', async () => {
    const json = await infer('linear', linearInput([1, 2, 4, 0.5, -1, 3], [2, 3]));
    const binary = await inferBinary(
      'linear',
      linearInput(undefined, [2, 3], { parameters: { binary_data_size: 24 } }),
      [f32(1, 2, 4, 0.5, -1, 3)],
    );
    expect(binary.status).toBe(200);
    expect(binary.contentType).toBe('application/json'); // no binary output was asked for
    expect(binary.body).toEqual(json.body);
  });

  it('carries INT64, BOOL, BYTES, FP16 and UINT8 in binary both ways, outputs in the order asked', async () => {
    const reply = await inferBinary(
      'types',
      {
        parameters: { binary_data_output: true },
        inputs: [
          { name: 'i64', shape: [2], datatype: 'INT64', parameters: { binary_data_size: 16 } },
          { name: 'flag', shape: [2], datatype: 'BOOL', parameters: { binary_data_size: 2 } },
          { name: 'text', shape: [2], datatype: 'BYTES', parameters: { binary_data_size: 14 } },
          { name: 'half', shape: [3], datatype: 'FP16', data: [1.5, -0.1, 65504] },
          { name: 'byte', shape: [], datatype: 'UINT8', parameters: { binary_data_size: 1 } },
        ],
        outputs: [
          { name: 'text_out' },
          { name: 'i64_out' },
          { name: 'half_out', parameters: { binary_data: false } },
          { name: 'flag_out' },
          { name: 'byte_out' },
        ],
      },
      [i64(-(2n ** 62n), 42n), Buffer.from([1, 0]), strings('héllo', ''), Buffer.from([255])],
    );
    expect(reply.status).toBe(200);
    expect(reply.contentType).toBe('application/octet-stream');
    expect(reply.body.outputs).toEqual([
      { name: 'text_out', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: 14 } },
      { name: 'i64_out', datatype: 'INT64', shape: [2], parameters: { binary_data_size: 16 } },
      { name: 'half_out', datatype: 'FP16', shape: [3], data: [1.5, -0.0999755859375, 65504] },
      { name: 'flag_out', datatype: 'BOOL', shape: [2], parameters: { binary_data_size: 2 } },
      { name: 'byte_out', datatype: 'UINT8', shape: [], parameters: { binary_data_size: 1 } },
    ]);
    // INT64 beyond 2^53 survives: binary data has no JSON double in the way.
    expect(reply.binary).toEqual(
      Buffer.concat([strings('héllo', ''), i64(-(2n ** 62n), 42n), Buffer.from([1, 0]), Buffer.from([255])]),
    );
  });

  const bad: [string, unknown, Buffer[], string | undefined, string][] = [
    [
      'a header length beyond the body',
      linearInput(undefined, [1, 3], { parameters: { binary_data_size: 12 } }),
      [f32(1, 2, 3)],
      '100000',
      'Inference-Header-Content-Length must be the JSON header',
    ],
    [
      'a header length that is not a number',
      linearInput(undefined, [1, 3], { parameters: { binary_data_size: 12 } }),
      [f32(1, 2, 3)],
      'twelve',
      'Inference-Header-Content-Length must be the JSON header',
    ],
    [
      'a size that does not match the shape',
      linearInput(undefined, [1, 3], { parameters: { binary_data_size: 8 } }),
      [f32(1, 2)],
      undefined,
      "input 'float_input': 3 FP32 elements take 12 bytes, but binary_data_size is 8",
    ],
    [
      'bytes no input claims',
      linearInput(undefined, [1, 3], { parameters: { binary_data_size: 12 } }),
      [f32(1, 2, 3, 4)],
      undefined,
      "the body has 16 bytes after the JSON header, but the inputs' binary_data_size add up to 12",
    ],
    [
      'a size past the end of the body',
      linearInput(undefined, [1, 3], { parameters: { binary_data_size: 12 } }),
      [f32(1)],
      undefined,
      "input 'float_input': binary_data_size 12 runs past the end of the body (4 bytes left)",
    ],
    [
      'both data and binary_data_size',
      linearInput([1, 2, 3], [1, 3], { parameters: { binary_data_size: 12 } }),
      [f32(1, 2, 3)],
      undefined,
      "input 'float_input': give either 'data' or 'binary_data_size', not both",
    ],
  ];

  it.each(bad)('400 for %s', async (_what, header, parts, declared, error) => {
    const reply = await inferBinary('linear', header, parts, declared);
    expect(reply.status).toBe(400);
    expect(String(reply.body.error)).toContain(error);
    // The server goes on serving.
    expect((await infer('linear', linearInput([1, 2, 4]))).status).toBe(200);
  });

  it('400 for a BOOL byte that is neither 0 nor 1, and for a cut BYTES element', async () => {
    const types = (flag: Buffer, text: Buffer) =>
      inferBinary(
        'types',
        {
          inputs: [
            { name: 'i64', shape: [1], datatype: 'INT64', data: [1] },
            { name: 'flag', shape: [2], datatype: 'BOOL', parameters: { binary_data_size: flag.length } },
            { name: 'text', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: text.length } },
            { name: 'half', shape: [3], datatype: 'FP16', data: [0, 0, 0] },
            { name: 'byte', shape: [], datatype: 'UINT8', data: [1] },
          ],
        },
        [flag, text],
      );
    expect((await types(Buffer.from([1, 2]), strings('x'))).body).toEqual({
      error: "input 'flag': element 1 is not a BOOL (0 or 1)",
    });
    expect((await types(Buffer.from([1, 0]), strings('xyz').subarray(0, 5))).body).toEqual({
      error: "input 'text': a BYTES element runs past its data",
    });
    expect((await types(Buffer.from([1, 0]), strings('x'))).status).toBe(200);
    // onnxruntime's strings are C strings of UTF-8: bytes it would change are refused, not changed.
    for (const text of [strings('ab\u0000cd'), Buffer.from([2, 0, 0, 0, 0xff, 0xfe])]) {
      expect((await types(Buffer.from([1, 0]), text)).body).toEqual({
        error:
          "input 'text': BYTES element 0 is not UTF-8 text without NUL bytes, which is all onnxruntime string tensors hold",
      });
    }
  });
});

describe('OIP v2 server: bad requests get a clear error and the server keeps serving', () => {
  const valid = linearInput([1, 2, 4]);
  const cases: [string, unknown, string | RegExp][] = [
    ['invalid JSON', '{"inputs": [', 'the request body is not valid JSON'],
    ['an empty body', '', 'the request body is empty'],
    ['a body that is not an object', '[1, 2]', 'the request body must be a JSON object'],
    ['no inputs', { inputs: [] }, "'inputs' must be a non-empty array"],
    ['an id that is not a string', { ...valid, id: 42 }, "'id' must be a string"],
    [
      'an unknown input name',
      { inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 4] }] },
      "unknown input 'x'; the model's inputs are: float_input",
    ],
    [
      'an input given twice',
      { inputs: [...valid.inputs, ...valid.inputs] },
      "input 'float_input' is given more than once",
    ],
    [
      'a datatype that is not the model input’s',
      linearInput([1, 2, 4], [1, 3], { datatype: 'FP64' }),
      "input 'float_input': datatype FP64 does not match the model's FP32",
    ],
    [
      'an unknown datatype',
      linearInput([1, 2, 4], [1, 3], { datatype: 'FLOAT' }),
      /^input 'float_input': 'datatype' must be one of BOOL, .* \(the model's is FP32\)$/,
    ],
    [
      'more data than the shape holds',
      linearInput([1, 2, 4, 5], [1, 3]),
      "input 'float_input': shape [1,3] holds 3 elements but 'data' has 4",
    ],
    [
      'a shape the model does not take',
      linearInput([1, 2, 4, 5], [1, 4]),
      "input 'float_input': shape [1,4] does not match the model's [-1,3]",
    ],
    [
      'a shape of the wrong rank',
      linearInput([1, 2, 4], [3]),
      "input 'float_input': shape [3] does not match the model's [-1,3]",
    ],
    [
      'a negative dimension',
      linearInput([1, 2, 4], [-1, 3]),
      "input 'float_input': 'shape' must be an array of at most 64 integers from 0 to 2147483647",
    ],
    [
      'a dimension onnxruntime cannot take, even with no data',
      linearInput([], [2 ** 32, 0, 1]),
      "input 'float_input': 'shape' must be an array of at most 64 integers from 0 to 2147483647",
    ],
    [
      'nested data that does not match the shape',
      linearInput([[1, 2], [4]], [1, 3]),
      "input 'float_input': nested 'data' does not match shape [1,3]; nest it exactly or flatten it",
    ],
    [
      'an element of the wrong type',
      linearInput([1, '2', 4]),
      "input 'float_input': element 1 is not a number (datatype FP32)",
    ],
    ['data that is not an array', linearInput('1,2,4'), "input 'float_input': 'data' must be an array"],
    [
      'an unknown output',
      { ...valid, outputs: [{ name: 'probabilities' }] },
      "unknown output 'probabilities'; the model's outputs are: variable",
    ],
    [
      'binary_data_size without a binary body',
      linearInput(undefined, [1, 3], { parameters: { binary_data_size: 12 } }),
      "input 'float_input': 'binary_data_size' needs a binary body (an Inference-Header-Content-Length header)",
    ],
  ];

  it.each(cases)('400 for %s', async (_what, body, error) => {
    const reply = await infer('linear', body);
    expect(reply.status).toBe(400);
    expect(reply.body).toEqual({
      error: expect.stringMatching(error instanceof RegExp ? error : `^${escape(error)}$`),
    });
  });

  it('400 for a missing input, naming it', async () => {
    const reply = await infer('types', {
      inputs: [{ name: 'i64', shape: [1], datatype: 'INT64', data: [1] }],
    });
    expect(reply).toMatchObject({
      status: 400,
      body: { error: "missing input 'flag', 'text', 'half', 'byte'" },
    });
  });

  it('400 for integers out of range, including INT64 beyond what JSON carries exactly', async () => {
    const types = (i64: unknown[], byte: unknown) => ({
      inputs: [
        { name: 'i64', shape: [i64.length], datatype: 'INT64', data: i64 },
        { name: 'flag', shape: [2], datatype: 'BOOL', data: [true, true] },
        { name: 'text', shape: [i64.length], datatype: 'BYTES', data: i64.map(String) },
        { name: 'half', shape: [3], datatype: 'FP16', data: [0, 0, 0] },
        { name: 'byte', shape: [], datatype: 'UINT8', data: [byte] },
      ],
    });
    expect((await infer('types', types([1], 1))).status).toBe(200);
    expect((await infer('types', types([1, 2 ** 53], 1))).body).toEqual({
      error: `input 'i64': element 1 is not an integer from ${Number.MIN_SAFE_INTEGER} to ${Number.MAX_SAFE_INTEGER} (datatype INT64)`,
    });
    expect((await infer('types', types([1], 256))).body).toEqual({
      error: "input 'byte': element 0 is not an integer from 0 to 255 (datatype UINT8)",
    });
    expect((await infer('types', types([1.5], 1))).status).toBe(400);
  });

  it('413 for a body over the limit, announced or streamed', async () => {
    const big = JSON.stringify(
      linearInput(
        Array.from({ length: MAX_BODY / 4 }, () => 1.25),
        [MAX_BODY / 12, 3],
      ),
    );
    expect(big.length).toBeGreaterThan(MAX_BODY);
    const reply = await call('POST', '/v2/models/linear/infer', big);
    expect(reply).toMatchObject({
      status: 413,
      body: { error: `the request body is larger than the ${MAX_BODY}-byte limit` },
    });

    // Without a content-length: the server counts what arrives.
    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(big));
        controller.close();
      },
    });
    const res = await fetch(`${server.url}/v2/models/linear/infer`, {
      method: 'POST',
      body: chunks,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
  });

  it('400 for a BYTES element with a NUL character, which onnxruntime would cut short', async () => {
    const reply = await infer('types', {
      inputs: [
        { name: 'i64', shape: [1], datatype: 'INT64', data: [1] },
        { name: 'flag', shape: [2], datatype: 'BOOL', data: [true, false] },
        { name: 'text', shape: [1], datatype: 'BYTES', data: ['ab\u0000cd'] },
        { name: 'half', shape: [3], datatype: 'FP16', data: [0, 0, 0] },
        { name: 'byte', shape: [], datatype: 'UINT8', data: [1] },
      ],
    });
    expect(reply).toEqual(
      expect.objectContaining({
        status: 400,
        body: {
          error:
            "input 'text': element 0 is not a string without NUL characters (onnxruntime string tensors cannot hold them) (datatype BYTES)",
        },
      }),
    );
  });

  it('takes gzip and deflate bodies, as Triton clients send them, within the same limit', async () => {
    const body = Buffer.from(JSON.stringify(valid));
    for (const [encoding, data] of [
      ['gzip', zlib.gzipSync(body)],
      ['deflate', zlib.deflateSync(body)],
    ] as const) {
      const reply = await call('POST', '/v2/models/linear/infer', new Uint8Array(data), {
        'content-encoding': encoding,
      });
      expect({ encoding, status: reply.status, outputs: reply.body.outputs }).toEqual({
        encoding,
        status: 200,
        outputs: [{ name: 'variable', datatype: 'FP32', shape: [1, 1], data: [3] }],
      });
    }
    const broken = await call('POST', '/v2/models/linear/infer', new Uint8Array(body), {
      'content-encoding': 'gzip',
    });
    expect(broken).toMatchObject({ status: 400, body: { error: 'the request body is not valid gzip data' } });
    // A small body that inflates past the limit (a "zip bomb") is refused by its inflated size.
    const bomb = zlib.gzipSync(Buffer.alloc(MAX_BODY * 4, 0x20));
    expect(bomb.length).toBeLessThan(MAX_BODY);
    const refused = await call('POST', '/v2/models/linear/infer', new Uint8Array(bomb), {
      'content-encoding': 'gzip',
    });
    expect(refused).toMatchObject({
      status: 413,
      body: { error: `the request body is larger than the ${MAX_BODY}-byte limit` },
    });
    const br = await call('POST', '/v2/models/linear/infer', JSON.stringify(valid), {
      'content-encoding': 'br',
    });
    expect(br).toMatchObject({
      status: 400,
      body: { error: 'content-encoding br is not supported; send gzip, deflate or identity' },
    });
    // A name that is a key of every JavaScript object is no encoding either.
    const proto = await call('POST', '/v2/models/linear/infer', JSON.stringify(valid), {
      'content-encoding': 'constructor',
    });
    expect(proto).toMatchObject({
      status: 400,
      body: { error: 'content-encoding constructor is not supported; send gzip, deflate or identity' },
    });
  });

  it('503 with Retry-After when the bytes of requests in flight would pass the budget', async () => {
    // The budget is 2 × MAX_BODY. Two uploads that have sent 63 KiB of their 64 KiB hold 126 KiB.
    const padded = JSON.stringify(valid).padEnd(60 * 1024, ' ');
    const { hostname, port } = new URL(server.url);
    const holders = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<net.Socket>((resolve) => {
            const socket = net.connect(Number(port), hostname, () => {
              socket.write(
                `POST /v2/models/linear/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${MAX_BODY}\r\n\r\n${' '.repeat(MAX_BODY - 1024)}`,
              );
              resolve(socket);
            });
          }),
      ),
    );
    const busy = await waitFor(async () => {
      const reply = await call('POST', '/v2/models/linear/infer', padded);
      return reply.status === 503 && reply;
    });
    expect(busy).toMatchObject({
      status: 503,
      body: { error: 'the server is busy with other large requests; retry in a moment (see Retry-After)' },
    });
    expect(busy.headers.get('retry-after')).toBe('1');
    expect((await call('GET', '/v2/health/live')).status).toBe(200); // small requests still pass
    for (const socket of holders) socket.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect((await call('POST', '/v2/models/linear/infer', padded)).status).toBe(200);
  });

  it('answers requests node:http cannot parse as Node would, with the error body; takes absolute-form targets', async () => {
    const raw = (request: string) =>
      new Promise<string>((resolve) => {
        const { hostname, port } = new URL(server.url);
        const socket = net.connect(Number(port), hostname, () => socket.write(request));
        let reply = '';
        socket.on('data', (d: Buffer) => (reply += d.toString()));
        socket.on('close', () => resolve(reply));
        socket.on('error', () => resolve(reply));
      });
    const headers = await raw(
      `GET /v2/health/live HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(headers).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(headers.endsWith('{"error":"the request line or headers are too large"}')).toBe(true);
    const garbage = await raw('NOT HTTP AT ALL\r\n\r\n');
    expect(garbage).toMatch(
      /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*\{"error":"the request is not valid HTTP\/1\.1"\}$/,
    );
    const absolute = await raw(
      `GET ${server.url}/v2/health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`,
    );
    expect(absolute).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\{"live":true\}$/);
  });

  it('404 for an unknown model, version or path; 405 for a wrong method', async () => {
    expect(await infer('nope', valid)).toMatchObject({
      status: 404,
      body: { error: "model 'nope' is not served here" },
    });
    expect(await infer('linear', valid, '2')).toMatchObject({
      status: 404,
      body: { error: "model 'linear' has no version '2' (serving '1')" },
    });
    expect(await call('GET', '/v1/models/linear')).toMatchObject({
      status: 404,
      body: { error: 'no such endpoint: GET /v1/models/linear' },
    });
    expect((await call('GET', '/v2/models/linear/predict')).status).toBe(404);
    const get = await call('GET', '/v2/models/linear/infer');
    expect(get).toMatchObject({ status: 405, body: { error: 'inference takes POST' } });
    expect(get.headers.get('allow')).toBe('POST');
    expect((await call('POST', '/v2/health/ready', {})).status).toBe(405);
  });

  it('still serves after all of that', async () => {
    expect((await call('GET', '/v2/health/live')).status).toBe(200);
    expect((await infer('linear', valid)).body.outputs).toEqual([
      { name: 'variable', datatype: 'FP32', shape: [1, 1], data: [3] },
    ]);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
