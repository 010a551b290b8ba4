/**
 * The agent's half of a job's own process, against small child scripts written here: what the
 * agent reports when the child dies without an answer (V8 aborting it when its dataset worker
 * outgrew its heap, the kernel's OOM killer), and that its partial output goes with it.
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { JobError } from './in-process-run.js';
import { runJobProcess } from './job-process.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-job-process-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const logger = pino({ level: 'silent' });

function script(name: string, body: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, body);
  return file;
}

function attemptDir(): string {
  const dir = fs.mkdtempSync(path.join(tmp, 'attempt-'));
  fs.writeFileSync(path.join(dir, 'partial.jsonl'), '{"half": ');
  return dir;
}

describe('runJobProcess', () => {
  it('reports a process that died without an answer as the job failing, and removes its partial output', async () => {
    // As the OOM killer ends it (SIGKILL: no core file, unlike V8's abort).
    const killed = script(
      'killed.mjs',
      "process.once('message', () => process.kill(process.pid, 'SIGKILL'));\n",
    );
    const dir = attemptDir();
    const err = await runJobProcess(
      {},
      {
        script: killed,
        what: 'train',
        signal: new AbortController().signal,
        logger,
        attemptDir: dir,
      },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobError);
    expect((err as Error).message).toBe(
      "the train process ended without an answer (SIGKILL): it may have needed more memory than this machine has; the agent's log has its output",
    );
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('passes progress up in order, then the result', async () => {
    const answers = script(
      'answers.mjs',
      "process.once('message', (r) => { for (const n of [1, 2, 3]) process.send({ type: 'progress', progress: n });\n" +
        "  process.send({ type: 'done', reply: { ok: true, result: r.x * 2 } }, () => process.exit(0)); });\n",
    );
    const seen: unknown[] = [];
    const result = await runJobProcess<number>(
      { x: 21 },
      {
        script: answers,
        what: 'train',
        signal: new AbortController().signal,
        logger,
        attemptDir: attemptDir(),
        onProgress: (p) => seen.push(p),
      },
    );
    expect(result).toBe(42);
    expect(seen).toEqual([1, 2, 3]);
  });
});
