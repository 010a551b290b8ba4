// The same flood through a real job: `yes | head -c BYTES` run by the agent's command runner,
// its output written to the log file and split for the tail. Wall time and the agent's CPU time.
// Usage: node bench/job-output/job.js [--mb 300] [--no-gate]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MAX_LOG_FILE_BYTES, startCommand } from '../../apps/agent/dist/executor/command-runner.js';
import { LogTail } from '../../apps/agent/dist/executor/log-tail.js';

const { values } = parseArgs({
  options: { mb: { type: 'string', default: '300' }, 'no-gate': { type: 'boolean' } },
});
const bytes = Number(values.mb) * 1e6;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-output-'));
const tail = new LogTail();
const gate = values['no-gate'] ? undefined : tail.lineGate();
const cpu = process.cpuUsage();
const start = process.hrtime.bigint();
const run = startCommand(
  {
    command: ['sh', '-c', `yes | head -c ${bytes}`],
    env: { PATH: process.env.PATH },
    cwd: path.join(dir, 'work'),
    logFile: path.join(dir, 'attempt.log'),
    timeoutSeconds: 600,
    cancelGraceSeconds: 1,
  },
  (stream, text) => tail.push(stream, text),
  MAX_LOG_FILE_BYTES,
  gate,
);
const result = await run.done;
const ms = Number(process.hrtime.bigint() - start) / 1e6;
const used = process.cpuUsage(cpu);
const logBytes = fs.statSync(path.join(dir, 'attempt.log')).size;
fs.rmSync(dir, { recursive: true, force: true });
console.log(
  JSON.stringify({
    mb: Number(values.mb),
    gate: !values['no-gate'],
    outcome: result.outcome,
    logComplete: logBytes === bytes,
    wallMs: Math.round(ms),
    agentCpuMs: Math.round((used.user + used.system) / 1000),
  }),
);
