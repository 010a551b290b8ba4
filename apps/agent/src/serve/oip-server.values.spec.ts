/**
 * @jest-environment <rootDir>/libs/testing/src/onnxruntime.jest-environment.mjs
 *
 * Values the server must refuse rather than change (float32 overflow, lone surrogates, a scalar
 * input given a tensor), and runs that onnxruntime fails: what the client is told, and what the
 * log keeps. Real HTTP requests to a real server over real onnxruntime sessions.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { gatherModel, identityModel } from '@hearth/testing';
import { ModelRepository } from './model-repository.js';
import { startOipServer, type OipServer } from './oip-server.js';
import { LogGate, runFailure, runFailureLog } from './run-failure.js';
import { ServeMetrics } from './serve-metrics.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-oip-values-'));
const lines: { level: number; msg: string; [key: string]: unknown }[] = [];
let repository: ModelRepository;
let server: OipServer;

beforeAll(async () => {
  const file = (name: string, bytes: Uint8Array) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, bytes);
    return p;
  };
  repository = new ModelRepository();
  await Promise.all([
    repository.load('gather', '1', file('gather.onnx', gatherModel())),
    repository.load(
      'floats',
      '1',
      file(
        'floats.onnx',
        identityModel([
          { name: 'f32', type: 'float32', shape: ['n'] },
          { name: 'f64', type: 'float64', shape: ['n'] },
        ]),
      ),
    ),
    repository.load(
      'text',
      '1',
      file('text.onnx', identityModel([{ name: 'text', type: 'string', shape: ['n'] }])),
    ),
    repository.load(
      'scalar',
      '1',
      file('scalar.onnx', identityModel([{ name: 's', type: 'float32', shape: [] }])),
    ),
    repository.load(
      'any',
      '1',
      file('any.onnx', identityModel([{ name: 'x', type: 'float32', shape: null }])),
    ),
  ]);
  server = await startOipServer({
    host: '127.0.0.1',
    port: 0,
    repository,
    metrics: new ServeMetrics(),
    logger: pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) }),
  });
});

afterAll(async () => {
  await server?.close(1000);
  await repository?.close({ force: true });
  fs.rmSync(dir, { recursive: true, force: true });
});

async function infer(model: string, body: unknown) {
  const res = await fetch(`${server.url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as { error?: string; outputs?: unknown[] } };
}

const floats = (f32: unknown[], f64: unknown[] = [0]) => ({
  inputs: [
    { name: 'f32', shape: [f32.length], datatype: 'FP32', data: f32 },
    { name: 'f64', shape: [f64.length], datatype: 'FP64', data: f64 },
  ],
});

describe('OIP v2 server: values refused rather than changed', () => {
  it('400 for an FP32 value beyond float32 (it would be Infinity), and an FP64 one beyond float64', async () => {
    expect(await infer('floats', floats([1, 1e39]))).toEqual({
      status: 400,
      body: {
        error:
          "input 'f32': element 1 is not a number within ±3.4028234663852886e+38 (float32) (datatype FP32)",
      },
    });
    expect((await infer('floats', floats([-1e39]))).body.error).toMatch(
      /^input 'f32': element 0 is not a number within/,
    );
    // JSON has no Infinity, but 1e400 parses to one.
    expect(
      await infer(
        'floats',
        '{"inputs":[{"name":"f32","shape":[1],"datatype":"FP32","data":[0]},' +
          '{"name":"f64","shape":[1],"datatype":"FP64","data":[1e400]}]}',
      ),
    ).toEqual({
      status: 400,
      body: { error: "input 'f64': element 0 is not a finite number (datatype FP64)" },
    });
    // The largest float32, and a float64 far beyond it, go through unchanged.
    expect(
      await infer('floats', floats([3.4028234663852886e38, -3.4028234663852886e38], [1e300])),
    ).toMatchObject({
      status: 200,
      body: {
        outputs: [
          { name: 'f32_out', data: [3.4028234663852886e38, -3.4028234663852886e38] },
          { name: 'f64_out', data: [1e300] },
        ],
      },
    });
  });

  it("checks the range on JSON.parse's arrays too (a body its fast reader gives up on)", async () => {
    // Nesting deeper than the fast reader goes (64) sends the whole body to JSON.parse.
    const deep = '['.repeat(70) + ']'.repeat(70);
    const body =
      `{"parameters":{"deep":${deep}},"inputs":[{"name":"f32","shape":[2],"datatype":"FP32","data":[1,1e39]},` +
      '{"name":"f64","shape":[1],"datatype":"FP64","data":[0]}]}';
    expect((await infer('floats', body)).body.error).toMatch(
      /^input 'f32': element 1 is not a number within/,
    );
  });

  it('400 for a BYTES string with a lone surrogate (UTF-8 has no form for it); pairs go through', async () => {
    const text = (data: string[]) => ({
      inputs: [{ name: 'text', shape: [data.length], datatype: 'BYTES', data }],
    });
    expect(await infer('text', text(['ok', 'a\ud800b']))).toEqual({
      status: 400,
      body: {
        error:
          "input 'text': element 1 is not well-formed Unicode (it has a lone surrogate, which UTF-8 cannot encode) (datatype BYTES)",
      },
    });
    expect((await infer('text', text(['\udc00']))).status).toBe(400);
    expect(await infer('text', text(['😀', 'é']))).toMatchObject({
      status: 200,
      body: { outputs: [{ name: 'text_out', data: ['😀', 'é'] }] },
    });
  });

  it('400 for a scalar input given a tensor; an input declared without a shape takes any rank up to 64', async () => {
    const scalar = (shape: number[], data: number[]) => ({
      inputs: [{ name: 's', shape, datatype: 'FP32', data }],
    });
    expect(await infer('scalar', scalar([2, 2], [1, 2, 3, 4]))).toEqual({
      status: 400,
      body: { error: "input 's': shape [2,2] does not match the model's []" },
    });
    expect(await infer('scalar', scalar([], [7]))).toMatchObject({
      status: 200,
      body: { outputs: [{ name: 's_out', shape: [], data: [7] }] },
    });

    const any = (shape: number[], data: unknown) => ({
      inputs: [{ name: 'x', shape, datatype: 'FP32', data }],
    });
    expect(
      await infer(
        'any',
        any(
          [2, 2],
          [
            [1, 2],
            [3, 4],
          ],
        ),
      ),
    ).toMatchObject({
      status: 200,
      body: { outputs: [{ name: 'x_out', shape: [2, 2], data: [1, 2, 3, 4] }] },
    });
    // 20,000 dimensions of 1 and data nested as deep once overflowed the stack (a 500).
    const ones = Array.from({ length: 20_000 }, () => 1);
    expect(await infer('any', any(ones, [1]))).toEqual({
      status: 400,
      body: { error: "input 'x': 'shape' must be an array of at most 64 integers from 0 to 2147483647" },
    });
  });
});

describe('OIP v2 server: runs onnxruntime fails', () => {
  it("400 when the client's values fail an operator, with none of onnxruntime's internals; its message only in the debug log", async () => {
    lines.length = 0;
    const reply = await infer('gather', {
      inputs: [{ name: 'indices', shape: [2], datatype: 'INT64', data: [0, 7] }],
    });
    expect(reply.status).toBe(400);
    const error = reply.body.error ?? '';
    const match =
      /^the model cannot compute on these inputs: its Gather operator rejected them \(error id ([0-9a-f-]{36}); the agent's debug log has onnxruntime's message\)$/.exec(
        error,
      );
    expect(match).not.toBeNull();
    // Neither the node's name, the table's size nor the value sent.
    expect(error).not.toMatch(/Gather_table|idx|\[-3,2\]|onnxruntime_src/);

    const logged = lines.filter((l) => l.errorId === match![1]);
    expect(logged).toEqual([
      expect.objectContaining({
        level: 20,
        model: 'gather',
        msg: 'the model rejected the inputs of an inference request',
        err: expect.stringContaining('idx=7 must be within the inclusive range [-3,2]'),
      }),
    ]);
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);

    expect(
      await infer('gather', { inputs: [{ name: 'indices', shape: [2], datatype: 'INT64', data: [2, -3] }] }),
    ).toMatchObject({
      status: 200,
      body: { outputs: [{ name: 'rows', shape: [2, 2], data: [5, 6, 1, 2] }] },
    });
  });

  it("500 for a failure that is the server's (memory, a GPU library), warned at most once per model per interval", () => {
    let now = 0;
    const logged: { level: string; fields: Record<string, unknown> }[] = [];
    const logger = {
      debug: (fields: Record<string, unknown>) => logged.push({ level: 'debug', fields }),
      warn: (fields: Record<string, unknown>) => logged.push({ level: 'warn', fields }),
    };
    const log = runFailureLog(logger as never, 10_000, () => now);
    const oom = new Error(
      "Non-zero status code returned while running MatMul node. Name:'MatMul_1' Status Message: CUDA failure 2: out of memory ; GPU=0 ; hostname=gpu-7",
    );
    const first = runFailure(oom, 'big', log);
    expect(first.code).toBe('INFERENCE_FAILED');
    expect(first.message).toMatch(/^inference failed on the server \(error id [0-9a-f-]{36}\)$/);
    expect(runFailure(new Error('std::bad_alloc'), 'big', log).code).toBe('INFERENCE_FAILED');
    now = 9_999;
    runFailure(oom, 'big', log);
    runFailure(oom, 'other', log);
    now = 10_000;
    runFailure(oom, 'big', log);
    expect(logged.map((l) => [l.level, l.fields.model, l.fields.failures])).toEqual([
      ['warn', 'big', 1],
      ['debug', 'big', undefined],
      ['debug', 'big', undefined],
      ['warn', 'other', 1],
      ['warn', 'big', 3], // this one and the two held back
    ]);
    expect(logged[0].fields.err).toContain('CUDA failure 2: out of memory');

    // A kernel's failure on values, and a message of no known form (a 500: the server's checks missed it).
    expect(
      runFailure(
        new Error(
          "Non-zero status code returned while running Reshape node. Name:'r' Status Message: cannot reshape",
        ),
        'm',
        log,
      ).code,
    ).toBe('INPUT_REJECTED');
    expect(runFailure(new Error('something else'), 'm', log).code).toBe('INFERENCE_FAILED');
  });

  it('LogGate passes one event per key per interval and counts the rest into the next', () => {
    let now = 0;
    const gate = new LogGate(1000, () => now);
    expect([gate.pass('a'), gate.pass('a'), gate.pass('b'), gate.pass('a')]).toEqual([1, 0, 1, 0]);
    now = 1000;
    expect([gate.pass('a'), gate.pass('b')]).toEqual([3, 1]);
  });
});
