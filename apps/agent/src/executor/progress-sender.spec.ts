import { describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { EgressRefusedError, StreamFullError } from '../egress/guard.js';
import { AgentCounters } from '../telemetry/counters.js';
import { ProgressSender, type Progress } from './progress-sender.js';

const backend = (b: 'wasm' | 'cpu'): Progress => ({ kind: 'train.backend', backend: b });
const epoch = (n: number): Progress => ({
  kind: 'train.epoch',
  metrics: { epoch: n, loss: 1 / n, valLoss: null },
});

function setup(fail: (progress: Progress, seq: number, call: number) => Error | null) {
  const counters = new AgentCounters();
  const sent: { seq: number; progress: Progress }[] = [];
  const calls: number[] = [];
  const sender = new ProgressSender({
    logger: pino({ level: 'silent' }),
    counters,
    signal: new AbortController().signal,
    backoff: { initialMs: 1, maxMs: 2 },
    send: async (progress, seq) => {
      calls.push(seq);
      const err = fail(progress, seq, calls.length);
      if (err) throw err;
      sent.push({ seq, progress });
    },
  });
  return { sender, sent, calls, counters };
}

describe('ProgressSender', () => {
  it('sends in order with consecutive seqs, without waiting for the caller', async () => {
    const { sender, sent } = setup(() => null);
    sender.send(backend('wasm'));
    sender.send(epoch(1));
    sender.send(epoch(2));
    expect(sent).toEqual([]); // queued: the job is not held up
    await sender.finish();
    expect(sent).toEqual([
      { seq: 0, progress: backend('wasm') },
      { seq: 1, progress: epoch(1) },
      { seq: 2, progress: epoch(2) },
    ]);
  });

  it('retries a failed send under the same seq, then goes on', async () => {
    const { sender, sent, calls } = setup((_p, seq, call) =>
      seq === 0 && call <= 2 ? new Error('TIMEOUT') : null,
    );
    sender.send(epoch(1));
    sender.send(epoch(2));
    await sender.finish();
    expect(calls).toEqual([0, 0, 0, 1]);
    expect(sent.map((s) => s.seq)).toEqual([0, 1]);
  });

  it('gives up on an event after its tries, counts it, and sends the next', async () => {
    const { sender, sent, calls, counters } = setup((_p, seq) => (seq === 0 ? new Error('TIMEOUT') : null));
    sender.send(epoch(1));
    sender.send(epoch(2));
    await sender.finish();
    expect(calls.filter((s) => s === 0)).toHaveLength(5);
    expect(sent.map((s) => s.seq)).toEqual([1]);
    expect(counters.progressDropped).toBe(1);
  });

  it('never retries what the egress guard refuses', async () => {
    const { sender, calls, counters } = setup(() => new EgressRefusedError('refused'));
    sender.send(epoch(1));
    await sender.finish();
    expect(calls).toEqual([0]);
    expect(counters.progressDropped).toBe(1);
  });

  it('drops an event at once while the stream is full, but keeps trying one sent untilSent', async () => {
    const full = () =>
      new StreamFullError('job.progress refused by the stream: maximum messages per subject exceeded');
    const { sender, sent, calls, counters } = setup((_p, seq, call) =>
      seq < 2 || call <= 5 ? full() : null,
    );
    sender.send(epoch(1));
    sender.send(epoch(2));
    sender.send({ kind: 'serve.ready', endpoint: 'http://gpu-01:8600', executionProvider: 'cpu' }, true);
    await sender.finish();
    expect(calls).toEqual([0, 1, 2, 2, 2, 2]);
    expect(counters.progressDropped).toBe(2);
    expect(sent.map((s) => s.seq)).toEqual([2]);
  });

  it('keeps trying an event sent untilSent', async () => {
    const { sender, sent, calls } = setup((_p, _seq, call) =>
      call <= 8 ? new Error('no responders') : null,
    );
    sender.send({ kind: 'serve.ready', endpoint: 'http://gpu-01:8600', executionProvider: 'cpu' }, true);
    await sender.finish();
    expect(calls).toHaveLength(9);
    expect(sent).toHaveLength(1);
  });
});
