import { afterAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { parseLocalPolicy } from '../policy/local-policy.js';
import { pruneLogs, runLogRetention } from './log-retention.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-log-retention-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const DAY = 24 * 3600_000;
const now = Date.now();

/** A log of `bytes` last written `daysAgo` days ago, where the job runner writes it. */
function log(logsDir: string, daysAgo: number, bytes = 100, jobId = randomUUID()) {
  const attemptId = randomUUID();
  const file = path.join(logsDir, jobId, `${attemptId}.log`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, 'x'.repeat(bytes));
  const at = new Date(now - daysAgo * DAY);
  fs.utimesSync(file, at, at);
  return { file, attemptId, jobId };
}

describe('pruneLogs', () => {
  it('removes logs older than keepDays, and their job directories, but not a running attempt’s', async () => {
    const logsDir = fs.mkdtempSync(path.join(root, 'logs-'));
    const old = log(logsDir, 40);
    const recent = log(logsDir, 2);
    const running = log(logsDir, 45);
    const result = await pruneLogs(
      logsDir,
      { keepDays: 30, maxTotalBytes: 1e9 },
      (id) => id === running.attemptId,
      now,
    );
    expect(result).toEqual({ removed: 1, freedBytes: 100, keptBytes: 200 });
    expect(fs.existsSync(old.file)).toBe(false);
    expect(fs.existsSync(path.join(logsDir, old.jobId))).toBe(false);
    expect(fs.existsSync(recent.file)).toBe(true);
    expect(fs.existsSync(running.file)).toBe(true);
  });

  it('keeps the total under maxTotalBytes, removing the oldest first', async () => {
    const logsDir = fs.mkdtempSync(path.join(root, 'logs-'));
    const jobId = randomUUID();
    const logs = [5, 4, 3, 2, 1].map((daysAgo) => log(logsDir, daysAgo, 1000, jobId));
    const result = await pruneLogs(logsDir, { keepDays: 30, maxTotalBytes: 2500 }, () => false, now);
    expect(result).toEqual({ removed: 3, freedBytes: 3000, keptBytes: 2000 });
    expect(logs.map((l) => fs.existsSync(l.file))).toEqual([false, false, false, true, true]);
    expect(fs.existsSync(path.join(logsDir, jobId))).toBe(true); // it still holds two logs
  });

  it('removes what a job planted among the logs without following it', async () => {
    const logsDir = fs.mkdtempSync(path.join(root, 'logs-'));
    const outside = fs.mkdtempSync(path.join(root, 'outside-'));
    fs.writeFileSync(path.join(outside, 'precious.txt'), 'keep me');
    const kept = log(logsDir, 1);
    fs.symlinkSync(outside, path.join(logsDir, randomUUID()));
    fs.symlinkSync(outside, path.join(path.dirname(kept.file), `${randomUUID()}.log`));
    fs.writeFileSync(path.join(path.dirname(kept.file), 'notes.txt'), 'x');
    const result = await pruneLogs(logsDir, { keepDays: 30, maxTotalBytes: 1e9 }, () => false, now);
    expect(result.removed).toBe(3);
    expect(fs.readdirSync(path.dirname(kept.file))).toEqual([path.basename(kept.file)]);
    expect(fs.readFileSync(path.join(outside, 'precious.txt'), 'utf8')).toBe('keep me');
  });

  it('does nothing, and says so, when there are no logs yet', async () => {
    const result = await pruneLogs(
      path.join(root, 'never-made'),
      { keepDays: 1, maxTotalBytes: 1e9 },
      () => false,
    );
    expect(result).toEqual({ removed: 0, freedBytes: 0, keptBytes: 0 });
  });
});

describe('runLogRetention', () => {
  it('prunes at start with the policy’s settings, and stops with its signal', async () => {
    const logsDir = fs.mkdtempSync(path.join(root, 'logs-'));
    const old = log(logsDir, 8);
    const policy = parseLocalPolicy({ logs: { keepDays: 7 } }, path.join(root, 'policy.json'));
    expect(policy.logs).toEqual({ keepDays: 7, maxTotalBytes: 10 * 1024 ** 3 });
    const stop = new AbortController();
    const loop = runLogRetention(
      {
        logsDir,
        retention: policy.logs,
        running: () => false,
        logger: pino({ level: 'silent' }),
        intervalMs: 10,
      },
      stop.signal,
    );
    for (let i = 0; i < 100 && fs.existsSync(old.file); i++) await new Promise((r) => setTimeout(r, 10));
    expect(fs.existsSync(old.file)).toBe(false);
    stop.abort();
    await loop;
  });

  it('refuses a policy whose log limits make no sense, saying where', () => {
    expect(() => parseLocalPolicy({ logs: { keepDays: 0 } }, '/etc/hearth/policy.json')).toThrow(
      /policy \/etc\/hearth\/policy.json is invalid at logs.keepDays/,
    );
    expect(() => parseLocalPolicy({ logs: { maxTotalBytes: 10 } }, '/p.json')).toThrow(
      /logs.maxTotalBytes: at least 1 MiB/,
    );
  });
});
