import { describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { DatasetError } from '../ml/dataset.js';
import { PolicyError } from '../policy/local-policy.js';
import { JobError, startInProcess, type RunOutcome } from './in-process-run.js';

const logger = pino({ level: 'silent' });

/** A body that runs until its signal aborts, and rejects with the abort reason (as train() does). */
const untilAborted = (signal: AbortSignal) =>
  new Promise<RunOutcome>((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason as Error);
    signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
  });

describe('startInProcess', () => {
  it('reports a body that returns as SUCCEEDED, with its reason and result', async () => {
    const run = startInProcess({ timeoutSeconds: null, logger }, async () => ({
      reason: 'replaced by version 2',
    }));
    expect(await run.done).toEqual({
      outcome: 'SUCCEEDED',
      exitCode: null,
      signal: null,
      reason: 'replaced by version 2',
    });
  });

  it('times out through the signal', async () => {
    const run = startInProcess({ timeoutSeconds: 1, logger }, untilAborted);
    expect(await run.done).toMatchObject({ outcome: 'TIMED_OUT', reason: 'timed out after 1s' });
  });

  it('cancels and kills through the signal, first stop wins', async () => {
    const cancelled = startInProcess({ timeoutSeconds: 60, logger }, untilAborted);
    cancelled.cancel(5, 'cancelled by the control plane');
    cancelled.kill('agent stopped (forced)');
    expect(await cancelled.done).toMatchObject({
      outcome: 'CANCELLED',
      reason: 'cancelled by the control plane',
    });
  });

  it('ends with the stop even when the body throws something else on its way out', async () => {
    const run = startInProcess({ timeoutSeconds: null, logger }, async (signal) => {
      await untilAborted(signal).catch(() => undefined);
      throw new Error('session released mid-run');
    });
    run.kill('agent stopped: drain timeout of 1s');
    expect(await run.done).toMatchObject({
      outcome: 'RELEASED',
      reason: 'agent stopped: drain timeout of 1s',
    });
  });

  it('is given back as "agent stopping" when stopWith aborts (serve), even if it already has', async () => {
    const stopping = new AbortController();
    const run = startInProcess({ timeoutSeconds: null, stopWith: stopping.signal, logger }, untilAborted);
    stopping.abort();
    expect(await run.done).toMatchObject({ outcome: 'RELEASED', reason: 'agent stopping' });
    let ran = false;
    const late = startInProcess({ timeoutSeconds: null, stopWith: stopping.signal, logger }, async () => {
      ran = true;
      return {};
    });
    expect(await late.done).toMatchObject({ outcome: 'RELEASED', reason: 'agent stopping' });
    expect(ran).toBe(false);
  });

  it('fails with the message of errors written for the user', async () => {
    for (const err of [
      new PolicyError('the dataset file:///x.csv is outside the data roots'),
      new DatasetError('the target column "y" is not in the dataset'),
      new JobError('the inference server cannot listen on 127.0.0.1:80: EACCES'),
    ]) {
      const run = startInProcess({ timeoutSeconds: null, logger }, () => Promise.reject(err));
      expect(await run.done).toMatchObject({ outcome: 'FAILED', reason: err.message });
    }
  });

  it('fails an unexpected error with an id only, logging the details', async () => {
    const lines: string[] = [];
    const captured = pino({ level: 'error' }, { write: (line: string) => void lines.push(line) });
    const run = startInProcess({ timeoutSeconds: null, logger: captured }, () =>
      Promise.reject(new TypeError('cannot read properties of undefined (row 17: 4.2, 9.9)')),
    );
    const result = await run.done;
    expect(result.outcome).toBe('FAILED');
    const id = /^internal error on the agent \(id ([0-9a-f-]{36})\); its log has the details$/.exec(
      result.reason!,
    )?.[1];
    expect(id).toBeDefined();
    expect(result.reason).not.toContain('4.2');
    expect(lines.join('')).toContain(id!);
    expect(lines.join('')).toContain('cannot read properties of undefined');
  });
});
