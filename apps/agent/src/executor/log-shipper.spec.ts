import { describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { encode, JobLog, MAX_MESSAGE_BYTES } from '@hearth/contracts';
import { EgressRefusedError, StreamFullError } from '../egress/guard.js';
import { LogShipper } from './log-shipper.js';
import { LogTail, type TailBatch } from './log-tail.js';

const ref = {
  jobId: '0b6a3f3e-8d8e-4e8c-9a61-3c3b7e6c2d11',
  attemptId: '5f0f8c1c-1b7d-4f0e-8f6c-2d7c7d9e3a22',
  fencingToken: 1,
};

function tailWith(lines: string[]): LogTail {
  const tail = new LogTail({ burst: 1000, maxPending: 1000 });
  for (const line of lines) tail.push('stdout', line);
  return tail;
}

const numbered = (n: number) => Array.from({ length: n }, (_, i) => `line ${i}`);

/** Captures the shipper's log lines (JSON), as an operator would read them. */
function capture() {
  const lines: { msg: string; lost?: number }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

/** finish(), or 'timed out' when it has not returned within ms (a timer that a spin would starve). */
function finishWithin(shipper: LogShipper, ms: number): Promise<'finished' | 'timed out'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    shipper.finish().then(() => 'finished' as const),
    new Promise<'timed out'>((resolve) => (timer = setTimeout(() => resolve('timed out'), ms))),
  ]).finally(() => clearTimeout(timer));
}

describe('LogShipper', () => {
  it('returns from finish() after a forced stop when every send rejects at once', async () => {
    const forced = new AbortController();
    forced.abort();
    const tail = tailWith(numbered(120));
    const { logger, lines } = capture();
    let calls = 0;
    const shipper = new LogShipper({
      tail,
      logger,
      signal: forced.signal,
      // A closed connection: rejects before any timer can run. The escape hatch at 10,000 calls only
      // stops a spinning shipper from hanging the test run.
      send: async () => {
        if (++calls > 10_000) return;
        throw new Error('closed connection');
      },
    });
    shipper.start();
    expect(await finishWithin(shipper, 1000)).toBe('finished');
    expect(calls).toBe(1);
    expect(tail.totalDropped).toBe(120);
    expect(lines.filter((l) => l.msg === 'log lines not sent: agent stopping')).toEqual([
      expect.objectContaining({ lost: 70 }),
    ]);
    // Timers still fire after it.
    expect(await new Promise((resolve) => setTimeout(() => resolve('fired'), 0))).toBe('fired');
  });

  it('returns from finish() when every send fails and nothing stops it', async () => {
    const tail = tailWith(numbered(10));
    let calls = 0;
    const shipper = new LogShipper({
      tail,
      logger: pino({ level: 'silent' }),
      signal: new AbortController().signal,
      send: async () => {
        calls++;
        throw new Error('no responders');
      },
    });
    expect(await finishWithin(shipper, 3000)).toBe('finished');
    expect(calls).toBe(3); // one batch, three tries
    expect(tail.totalDropped).toBe(10);
  });

  it('still sends the last lines after a forced stop while the connection works', async () => {
    const forced = new AbortController();
    forced.abort();
    const sent: TailBatch[] = [];
    const shipper = new LogShipper({
      tail: tailWith(numbered(120)),
      logger: pino({ level: 'silent' }),
      signal: forced.signal,
      send: async (batch) => void sent.push(batch),
    });
    await shipper.finish();
    expect(sent.flatMap((b) => b.lines.map((l) => l.text))).toEqual(numbered(120));
  });

  it('does not retry a batch the egress guard refuses, and reports its lines as dropped', async () => {
    const sent: { seq: number; batch: TailBatch }[] = [];
    const calls: number[] = [];
    const shipper = new LogShipper({
      tail: tailWith(numbered(60)),
      logger: pino({ level: 'silent' }),
      signal: new AbortController().signal,
      send: async (batch, seq) => {
        calls.push(seq);
        if (seq === 0) throw new EgressRefusedError('refused to send an invalid job.log message');
        sent.push({ seq, batch });
      },
    });
    await shipper.finish();
    expect(calls).toEqual([0, 1]);
    expect(sent).toEqual([{ seq: 1, batch: { lines: expect.any(Array), dropped: 50 } }]);
    expect(sent[0].batch.lines.map((l) => l.text)).toEqual(numbered(60).slice(50));
  });

  it('drops what waits while the stream is full, without retrying, and reports the count once it has room', async () => {
    const tail = tailWith(numbered(120));
    const { logger, lines } = capture();
    const sent: { seq: number; batch: TailBatch }[] = [];
    const calls: number[] = [];
    let full = true;
    const shipper = new LogShipper({
      tail,
      logger,
      signal: new AbortController().signal,
      intervalMs: 10_000, // ticks by hand (finish), not by the clock
      send: async (batch, seq) => {
        calls.push(seq);
        if (full)
          throw new StreamFullError('job.log refused by the stream: maximum messages per subject exceeded');
        sent.push({ seq, batch });
      },
    });
    await shipper.finish();
    // One try for the first batch of 50; the other 70 lines waiting are dropped with it, not tried.
    expect(calls).toEqual([0]);
    expect(tail.totalDropped).toBe(120);
    for (const line of numbered(3)) tail.push('stdout', `later ${line}`);
    full = false;
    await shipper.finish();
    expect(sent).toEqual([
      {
        seq: 1,
        batch: { lines: numbered(3).map((l) => ({ stream: 'stdout', text: `later ${l}` })), dropped: 120 },
      },
    ]);
    expect(lines.map((l) => l.msg)).toEqual([
      'the stream is full for this agent: log lines are dropped and counted until it has room',
    ]);
  });

  it('delivers wide non-ASCII and binary lines in messages the contract accepts', async () => {
    const bar = '█'.repeat(1000); // 3 bytes each in UTF-8
    const control = Array.from({ length: 1024 }, (_, i) => String.fromCharCode(1 + (i % 31))).join(''); // \u00XX in JSON
    const output = [
      ...Array.from({ length: 60 }, (_, i) => `${bar} ${i}`),
      ...Array.from({ length: 30 }, () => control),
      'after the binary: the real error',
    ];
    const sizes: number[] = [];
    const delivered: string[] = [];
    const tail = tailWith(output);
    const shipper = new LogShipper({
      tail,
      logger: pino({ level: 'silent' }),
      signal: new AbortController().signal,
      // As the egress guard does it: encode with the contract, refuse what it will not take.
      send: async (batch, seq) => {
        let bytes: Uint8Array;
        try {
          bytes = encode(JobLog, { type: 'job.log', v: 1, ...ref, seq, ...batch });
        } catch (err) {
          throw new EgressRefusedError(String(err));
        }
        sizes.push(bytes.byteLength);
        delivered.push(...batch.lines.map((l) => l.text));
      },
    });
    await shipper.finish();
    expect(delivered).toEqual(output);
    expect(tail.totalDropped).toBe(0);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  });
});
