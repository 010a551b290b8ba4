// What splitting a command job's output into log-tail lines costs the agent, per line, for a
// flood of tiny lines (`yes`: "y\n" over and over), in 64 KiB chunks as a pipe delivers them.
// Uses the built agent (npm run build). Usage: node bench/job-output/run.js [--mb 100] [--no-gate]
import { parseArgs } from 'node:util';
import { LineSplitter } from '../../apps/agent/dist/executor/line-splitter.js';
import { LogTail } from '../../apps/agent/dist/executor/log-tail.js';

const { values } = parseArgs({
  options: { mb: { type: 'string', default: '100' }, 'no-gate': { type: 'boolean' } },
});
const chunk = Buffer.from('y\n'.repeat(32 * 1024));
const chunks = Math.round((Number(values.mb) * 1024 * 1024) / chunk.length);
const tail = new LogTail();
// The job runner's gate: lines the tail would drop are counted, not split out one by one.
const gate = values['no-gate'] ? undefined : tail.lineGate();
const splitter = new LineSplitter((text) => tail.push('stdout', text), 16 * 1024, gate);

const start = process.hrtime.bigint();
for (let i = 0; i < chunks; i++) splitter.push(chunk);
splitter.end();
tail.end();
const ms = Number(process.hrtime.bigint() - start) / 1e6;
let sent = 0;
for (let batch = tail.take(); batch; batch = tail.take()) sent += batch.lines.length;
const lines = chunks * 32 * 1024;
if (sent + tail.totalDropped !== lines)
  throw new Error(`lines lost: ${sent} + ${tail.totalDropped} != ${lines}`);
console.log(
  JSON.stringify({
    mb: Number(values.mb),
    gate: !values['no-gate'],
    lines,
    ms: Math.round(ms),
    nsPerLine: Number(((ms * 1e6) / lines).toFixed(1)),
    sent,
    dropped: tail.totalDropped,
  }),
);
