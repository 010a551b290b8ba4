import { describe, expect, it } from '@jest/globals';
import ort from 'onnxruntime-node';
import { floatToHalf, halfToFloat, parseInferRequest } from './oip-codec.js';
import { encodeInferResponse } from './oip-response.js';
import { parseJsonBody } from './oip-json.js';
import { matchRoute } from './oip-server.js';

describe('encodeInferResponse', () => {
  it('writes INT64 and UINT64 with every digit, and NaN as null', () => {
    const text = encodeInferResponse({
      modelName: 'm',
      modelVersion: '1',
      id: undefined,
      outputs: [
        { name: 'i', tensor: new ort.Tensor('int64', BigInt64Array.of(9007199254740993n, -1n), [2]) },
        { name: 'u', tensor: new ort.Tensor('uint64', BigUint64Array.of(18446744073709551615n), [1, 1]) },
        { name: 'f', tensor: new ort.Tensor('float64', Float64Array.of(0.5, NaN), [2]) },
      ],
    });
    expect(text).toBe(
      '{"model_name":"m","model_version":"1","outputs":[' +
        '{"name":"i","datatype":"INT64","shape":[2],"data":[9007199254740993,-1]},' +
        '{"name":"u","datatype":"UINT64","shape":[1,1],"data":[18446744073709551615]},' +
        '{"name":"f","datatype":"FP64","shape":[2],"data":[0.5,null]}]}',
    );
  });
});

describe('parseInferRequest', () => {
  const model = {
    inputs: [{ name: 'x', datatype: 'INT32' as const, shape: [-1, 2, 2] }],
    outputs: [
      { name: 'a', datatype: 'FP32' as const, shape: [-1] },
      { name: 'b', datatype: 'FP32' as const, shape: [-1] },
    ],
  };

  it('flattens data nested exactly as the shape, row-major', () => {
    const request = parseInferRequest(
      {
        inputs: [
          {
            name: 'x',
            shape: [2, 2, 2],
            datatype: 'INT32',
            data: [
              [
                [1, 2],
                [3, 4],
              ],
              [
                [5, 6],
                [7, 8],
              ],
            ],
          },
        ],
        outputs: [{ name: 'b' }, { name: 'a', parameters: { binary_data: true } }, { name: 'b' }],
      },
      model,
    );
    expect(Array.from(request.feeds.x.data as Int32Array)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(request.feeds.x.dims).toEqual([2, 2, 2]);
    expect(request.outputNames).toEqual(['b', 'a']);
    expect(request.id).toBeUndefined();
  });

  it('accepts an empty batch', () => {
    const request = parseInferRequest(
      { inputs: [{ name: 'x', shape: [0, 2, 2], datatype: 'INT32', data: [] }] },
      model,
    );
    expect(request.feeds.x.dims).toEqual([0, 2, 2]);
    expect(request.outputNames).toEqual(['a', 'b']);
  });

  it('does not echo the data in its errors', () => {
    expect(() =>
      parseInferRequest(
        { inputs: [{ name: 'x', shape: [1, 2, 2], datatype: 'INT32', data: [1, 2, 3, 'secret-value'] }] },
        model,
      ),
    ).toThrow("input 'x': element 3 is not an integer from -2147483648 to 2147483647 (datatype INT32)");
  });
});

describe('parseInferRequest on parseJsonBody data', () => {
  const signature = (datatype: string, shape: number[]) => ({
    inputs: [{ name: 'x', datatype: datatype as 'FP32', shape }],
    outputs: [{ name: 'y', datatype: 'FP32' as const, shape: [-1] }],
  });
  /** The tensor, or the error message, from a request parsed both ways. */
  const both = (datatype: string, modelShape: number[], shape: number[], data: string) => {
    const text = `{"inputs":[{"name":"x","datatype":"${datatype}","shape":[${shape.join(',')}],"data":${data}}]}`;
    const decode = (body: unknown) => {
      try {
        const { x } = parseInferRequest(body, signature(datatype, modelShape)).feeds;
        return { type: x.type, dims: x.dims, data: Array.from(x.data as ArrayLike<number | bigint>) };
      } catch (err) {
        return { error: (err as Error).message };
      }
    };
    return [decode(parseJsonBody(Buffer.from(text))), decode(JSON.parse(text))];
  };

  it('gives the same tensors and the same errors as JSON.parse data', () => {
    const cases: [string, number[], number[], string][] = [
      ['FP32', [-1, 3], [2, 3], '[0.1,-2.5,3,1e-7,-0,65504.123]'],
      ['FP32', [-1, 3], [2, 3], '[[0.1,-2.5,3],[1e-7,-0,65504.123]]'],
      ['FP64', [-1, 2], [2, 2], '[[0.1,0.2],[0.30000000000000004,1e308]]'],
      ['FP16', [-1], [3], '[1,0.1,65504]'],
      ['FP16', [-1], [2], '[1,70000]'],
      ['INT32', [-1, 2], [1, 2], '[[7,-8]]'],
      ['INT32', [-1, 2], [1, 2], '[[7,1.5]]'],
      ['INT64', [-1], [2], '[9007199254740991,-1]'],
      ['UINT8', [-1], [2], '[255,256]'],
      ['BOOL', [-1], [1], '[1]'],
      ['BYTES', [-1], [1], '[1]'],
      ['FP32', [-1, 3], [2, 3], '[[1,2],[3,4],[5,6]]'], // nested as 3×2, shape 2×3
      ['FP32', [-1, 3], [2, 3], '[[1,2,3]]'], // too few rows
      ['FP32', [-1, 3], [2, 3], '[1,2,3]'], // too few elements
      ['FP32', [-1, 2, 2], [1, 2, 2], '[[[1,2],[3,4]]]'],
      ['FP32', [], [], '[[1]]'], // nested data for a scalar
    ];
    for (const [datatype, modelShape, shape, data] of cases) {
      const [ours, v8] = both(datatype, modelShape, shape, data);
      expect({ data, ours }).toEqual({ data, ours: v8 });
    }
    expect(both('FP32', [-1, 3], [2, 3], '[[1,2],[3,4],[5,6]]')[0]).toEqual({
      error: "input 'x': nested 'data' does not match shape [2,3]; nest it exactly or flatten it",
    });
  });
});

describe('half precision', () => {
  it('rounds to the nearest half and back', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [0.1, 0x2e66],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -14, 0x0400], // smallest normal
      [1 + 2 ** -11, 0x3c00], // a tie rounds to even
      [1 + 3 * 2 ** -11, 0x3c02],
      [Infinity, 0x7c00],
    ];
    for (const [value, bits] of cases) expect([value, floatToHalf(value)]).toEqual([value, bits]);
    expect(halfToFloat(0x2e66)).toBe(0.0999755859375);
    expect(halfToFloat(0x0001)).toBe(2 ** -24);
    expect(halfToFloat(0xfc00)).toBe(-Infinity);
    expect(halfToFloat(0x7e00)).toBeNaN();
    for (let bits = 0; bits < 0x7c00; bits += 37) expect(floatToHalf(halfToFloat(bits))).toBe(bits);
  });
});

describe('matchRoute', () => {
  it('reads the OIP paths, with or without a version, a trailing slash or a query', () => {
    expect(matchRoute('/v2')).toEqual({ kind: 'server-metadata' });
    expect(matchRoute('/v2/health/ready?x=1')).toEqual({ kind: 'ready' });
    expect(matchRoute('/v2/models/iris')).toEqual({
      kind: 'model-metadata',
      name: 'iris',
      version: undefined,
    });
    expect(matchRoute('/v2/models/iris/versions/3/')).toEqual({
      kind: 'model-metadata',
      name: 'iris',
      version: '3',
    });
    expect(matchRoute('/v2/models/my%20model/versions/v1.2/infer')).toEqual({
      kind: 'infer',
      name: 'my model',
      version: 'v1.2',
    });
    expect(matchRoute('/v2/models/iris/versions/3/ready')).toEqual({
      kind: 'model-ready',
      name: 'iris',
      version: '3',
    });
  });

  it('trims trailing slashes in time linear in their number', () => {
    // A backtracking /\/+$/ takes the square of the run: about 10 s for these 100,000 slashes.
    const started = performance.now();
    expect(matchRoute(`/v2/health/live${'/'.repeat(100_000)}`)).toEqual({ kind: 'live' });
    expect(matchRoute(`/v2/models/m${'/'.repeat(100_000)}x`)).toBeNull();
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('matches nothing else', () => {
    for (const url of [
      '/',
      '/v1/models/iris',
      '/v2/health',
      '/v2/models/iris/explain',
      '/v2/models/%E0%A4%A/ready',
    ]) {
      expect([url, matchRoute(url)]).toEqual([url, null]);
    }
  });
});
