import { describe, expect, it } from '@jest/globals';
import { encode, JobLog, LOG_TAIL, MAX_MESSAGE_BYTES } from '@hearth/contracts';
import { KEEP_LAST_LINES, LogTail, truncateLine, type TailBatch } from './log-tail.js';

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function drain(tail: LogTail): TailBatch[] {
  const batches: TailBatch[] = [];
  for (let b = tail.take(); b; b = tail.take()) batches.push(b);
  return batches;
}

const ref = {
  jobId: '0b6a3f3e-8d8e-4e8c-9a61-3c3b7e6c2d11',
  attemptId: '5f0f8c1c-1b7d-4f0e-8f6c-2d7c7d9e3a22',
  fencingToken: 1,
};

describe('LogTail', () => {
  it('admits a burst, then drops and counts the excess', () => {
    const c = clock();
    const tail = new LogTail({ ratePerSecond: 50, burst: 200, maxPending: 1000, now: c.now });
    for (let i = 0; i < 300; i++) tail.push('stdout', `line ${i}`);
    const batches = drain(tail);
    expect(batches.flatMap((b) => b.lines)).toHaveLength(200);
    // The last lines' drops wait: they may be the end of the output (see the next test).
    expect(batches.reduce((sum, b) => sum + b.dropped, 0)).toBe(100 - KEEP_LAST_LINES);
    expect(batches.every((b) => b.lines.length <= LOG_TAIL.maxLinesPerMessage)).toBe(true);
    expect(batches[0].lines[0]).toEqual({ stream: 'stdout', text: 'line 0' });
    expect(batches.at(-1)?.lines.at(-1)?.text).toBe('line 199');
  });

  it('sends the last lines of the output even when the rate limit dropped them', () => {
    const c = clock();
    const tail = new LogTail({ ratePerSecond: 50, burst: 200, maxPending: 1000, now: c.now });
    for (let i = 0; i < 300; i++) tail.push(i === 299 ? 'stderr' : 'stdout', `line ${i}`);
    drain(tail);
    tail.end();
    const [last, ...rest] = drain(tail);
    expect(rest).toEqual([]);
    expect(last.dropped).toBe(0);
    // The last KEEP_LAST_LINES of stdout (279-298) and of stderr (299), in order.
    expect(last.lines.map((l) => l.text)).toEqual(
      Array.from({ length: KEEP_LAST_LINES + 1 }, (_, i) => `line ${299 - KEEP_LAST_LINES + i}`),
    );
    expect(last.lines.at(-1)).toEqual({ stream: 'stderr', text: 'line 299' });
    expect(tail.totalDropped).toBe(100 - KEEP_LAST_LINES - 1);
  });

  it("keeps a stream's last lines when the other stream's are read after them", () => {
    // stdout and stderr are two pipes: a traceback may be read before the last of a flood.
    const c = clock();
    const tail = new LogTail({ ratePerSecond: 50, burst: 200, maxPending: 1000, now: c.now });
    for (let i = 0; i < 250; i++) tail.push('stdout', `noise ${i}`);
    tail.push('stderr', 'Traceback: the real error');
    for (let i = 250; i < 300; i++) tail.push('stdout', `noise ${i}`);
    tail.end();
    const lines = drain(tail).flatMap((b) => b.lines);
    expect(lines.slice(-(KEEP_LAST_LINES + 1))).toEqual([
      { stream: 'stderr', text: 'Traceback: the real error' },
      ...Array.from({ length: KEEP_LAST_LINES }, (_, i) => ({
        stream: 'stdout',
        text: `noise ${300 - KEEP_LAST_LINES + i}`,
      })),
    ]);
    expect(lines.length + tail.totalDropped).toBe(301);
  });

  it('reports held-back drops once a later line is admitted: those were not the end', () => {
    const c = clock();
    const tail = new LogTail({ ratePerSecond: 50, burst: 200, maxPending: 1000, now: c.now });
    for (let i = 0; i < 205; i++) tail.push('stdout', `burst ${i}`);
    expect(drain(tail).reduce((sum, b) => sum + b.dropped, 0)).toBe(0); // all 5 held back
    c.advance(1000);
    tail.push('stdout', 'later');
    tail.end();
    const batches = drain(tail);
    expect(batches.flatMap((b) => b.lines.map((l) => l.text))).toEqual(['later']);
    expect(batches.reduce((sum, b) => sum + b.dropped, 0)).toBe(5);
    expect(tail.totalDropped).toBe(5);
  });

  it('says whether it would admit a line, and counts lines skipped unseen as dropped, not as the end', () => {
    const c = clock();
    const tail = new LogTail({ ratePerSecond: 50, burst: 2, maxPending: 1000, now: c.now });
    expect(tail.accepting()).toBe(true);
    tail.push('stdout', 'one');
    tail.push('stdout', 'two');
    expect(tail.accepting()).toBe(false);
    tail.skipped(1_000_000);
    tail.push('stdout', 'last');
    expect(tail.totalDropped).toBe(1_000_001);
    c.advance(20);
    expect(tail.accepting()).toBe(true);
    tail.end();
    const batches = drain(tail);
    expect(batches.flatMap((b) => b.lines.map((l) => l.text))).toEqual(['one', 'two', 'last']);
    expect(batches.reduce((sum, b) => sum + b.dropped, 0)).toBe(1_000_000);
    expect(tail.totalDropped).toBe(1_000_000);
  });

  it('refills at the sustained rate', () => {
    const c = clock();
    const tail = new LogTail({ ratePerSecond: 50, burst: 200, maxPending: 1000, now: c.now });
    for (let i = 0; i < 200; i++) tail.push('stdout', 'x');
    drain(tail);
    c.advance(1000);
    for (let i = 0; i < 80; i++) tail.push('stderr', 'y');
    const batches = drain(tail);
    expect(batches.flatMap((b) => b.lines)).toHaveLength(50);
    expect(batches.reduce((sum, b) => sum + b.dropped, 0)).toBe(30 - KEEP_LAST_LINES);
  });

  it('never holds more than maxPending lines while nothing is taken', () => {
    const c = clock();
    const tail = new LogTail({ ratePerSecond: 1000, burst: 1000, maxPending: 120, now: c.now });
    for (let i = 0; i < 500; i++) tail.push('stdout', 'z');
    const batches = drain(tail);
    expect(batches.flatMap((b) => b.lines)).toHaveLength(120);
    expect(batches.reduce((sum, b) => sum + b.dropped, 0)).toBe(380 - KEEP_LAST_LINES);
  });

  it('truncates long lines to the contract bound, visibly', () => {
    const tail = new LogTail();
    tail.push('stdout', 'a'.repeat(5000));
    const [batch] = drain(tail);
    expect(batch.lines[0].text).toHaveLength(LOG_TAIL.maxLineChars);
    expect(batch.lines[0].text.endsWith('…')).toBe(true);
    expect(truncateLine('short')).toBe('short');
  });

  it('sends binary output as text the control plane can store: NUL and broken pairs become U+FFFD', () => {
    const tail = new LogTail();
    tail.push('stdout', 'ELF\u0000\u0000header');
    // A long line cut where an emoji's two halves meet keeps neither half.
    tail.push('stderr', `${'x'.repeat(LOG_TAIL.maxLineChars - 2)}📈 and more`);
    const [batch] = drain(tail);
    expect(batch.lines[0].text).toBe('ELF\uFFFD\uFFFDheader');
    expect(batch.lines[1].text).toBe(`${'x'.repeat(LOG_TAIL.maxLineChars - 2)}…`);
  });

  it('produces batches the contract accepts', () => {
    const tail = new LogTail();
    for (let i = 0; i < 260; i++) tail.push(i % 2 ? 'stderr' : 'stdout', 'b'.repeat(i * 20));
    drain(tail).forEach((batch, seq) => {
      expect(JobLog.safeParse({ type: 'job.log', v: 1, ...ref, seq, ...batch }).success).toBe(true);
    });
  });

  it('counts the lines of a batch that could not be sent as dropped in the next one', () => {
    const tail = new LogTail();
    tail.push('stdout', 'one');
    tail.push('stdout', 'two');
    const batch = tail.take()!;
    tail.restore(batch);
    expect(tail.take()).toEqual({ lines: [], dropped: 2 });
    expect(tail.take()).toBeNull();
    expect(tail.totalDropped).toBe(2);
  });

  it('keeps each batch under the message size, whatever the lines encode to', () => {
    const bar = '█'.repeat(1000); // 3 bytes each in UTF-8
    const control = Array.from({ length: 1024 }, (_, i) => String.fromCharCode(1 + (i % 31))).join('');
    const pushed = [...Array.from({ length: 60 }, (_, i) => `${bar} ${i}`), ...Array(60).fill(control)];
    const tail = new LogTail({ burst: 1000, maxPending: 1000 });
    for (const text of pushed) tail.push('stderr', text);
    const batches = drain(tail);
    expect(batches.flatMap((b) => b.lines.map((l) => l.text))).toEqual(pushed);
    // Each with the envelope at its largest: a 16-digit fencing token, 10-digit seq and drop count.
    const big = Number.MAX_SAFE_INTEGER;
    const int32 = 2 ** 31 - 1;
    for (const batch of batches) {
      const message = {
        type: 'job.log',
        v: 1,
        ...ref,
        fencingToken: big,
        ...batch,
        seq: int32,
        dropped: int32,
      } as const;
      expect(encode(JobLog, message).byteLength).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    }
    expect(batches.length).toBeGreaterThan(3);
  });

  it('gives up lines it will not send as dropped', () => {
    const tail = new LogTail();
    tail.push('stdout', 'one');
    tail.push('stdout', 'two');
    expect(tail.pendingLines).toBe(2);
    expect(tail.dropPending()).toBe(2);
    expect(tail.pendingLines).toBe(0);
    expect(tail.take()).toEqual({ lines: [], dropped: 2 });
    expect(tail.totalDropped).toBe(2);
  });
});
