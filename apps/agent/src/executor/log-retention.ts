/**
 * Full job logs (`<data-dir>/logs/<job>/<attempt>.log`, up to 1 GiB each) are kept for the local
 * policy's `logs.keepDays` and, all together, within its `logs.maxTotalBytes`, the oldest removed
 * first: the data dir's disk also holds the egress ledger, and once that cannot be written the
 * agent can send nothing at all. The log of an attempt still running is never removed. Entries
 * that are not what the agent writes (a link, a socket: a command job runs as the agent's user and
 * may plant one) are removed as they are, never followed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { sleep } from '../connection/backoff.js';
import { errorMessage, type Logger } from '../logger.js';

export interface LogRetention {
  keepDays: number;
  maxTotalBytes: number;
}

export interface PruneResult {
  removed: number;
  freedBytes: number;
  keptBytes: number;
}

const DAY_MS = 24 * 3600_000;
/** How often the logs are looked at (and once at start). */
export const LOG_RETENTION_INTERVAL_MS = 3600_000;
const LOG_FILE = /^[0-9a-f-]{36}\.log$/;

interface LogFile {
  file: string;
  attemptId: string;
  bytes: number;
  mtimeMs: number;
}

/** Removes what the retention does not keep; `running` says whether an attempt still runs. */
export async function pruneLogs(
  logsDir: string,
  retention: LogRetention,
  running: (attemptId: string) => boolean,
  now = Date.now(),
): Promise<PruneResult> {
  const result: PruneResult = { removed: 0, freedBytes: 0, keptBytes: 0 };
  const logs: LogFile[] = [];
  const jobDirs: string[] = [];
  for (const job of await entries(logsDir)) {
    const dir = path.join(logsDir, job.name);
    if (!job.isDirectory()) {
      await remove(dir, 0, result);
      continue;
    }
    jobDirs.push(dir);
    for (const entry of await entries(dir)) {
      const file = path.join(dir, entry.name);
      const stat = await fs.promises.lstat(file).catch(() => null);
      if (!stat) continue;
      if (!entry.isFile() || !LOG_FILE.test(entry.name)) await remove(file, 0, result);
      else logs.push({ file, attemptId: entry.name.slice(0, -4), bytes: stat.size, mtimeMs: stat.mtimeMs });
    }
  }
  // Oldest first: past keepDays they go; then while the total is over the cap.
  logs.sort((a, b) => a.mtimeMs - b.mtimeMs);
  let total = logs.reduce((sum, l) => sum + l.bytes, 0);
  for (const log of logs) {
    if (running(log.attemptId)) continue;
    if (log.mtimeMs >= now - retention.keepDays * DAY_MS && total <= retention.maxTotalBytes) break;
    if (await remove(log.file, log.bytes, result)) total -= log.bytes;
  }
  // A job's directory goes with its last log (not while an attempt of it may still write there).
  for (const dir of jobDirs) await fs.promises.rmdir(dir).catch(() => undefined);
  result.keptBytes = total;
  return result;
}

async function entries(dir: string): Promise<fs.Dirent[]> {
  return fs.promises.readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
}

/** Unlinks a file or a link (a directory planted where a log goes is removed whole, without following links). */
async function remove(file: string, bytes: number, result: PruneResult): Promise<boolean> {
  try {
    await fs.promises.rm(file, { recursive: true, force: true });
  } catch {
    return false;
  }
  result.removed++;
  result.freedBytes += bytes;
  return true;
}

/** Prunes at start and then every LOG_RETENTION_INTERVAL_MS until `signal`; a failed pass is logged, not fatal. */
export async function runLogRetention(
  options: {
    logsDir: string;
    retention: LogRetention;
    running: (attemptId: string) => boolean;
    logger: Logger;
    intervalMs?: number;
  },
  signal: AbortSignal,
): Promise<void> {
  const { logsDir, retention, running, logger } = options;
  do {
    try {
      const pruned = await pruneLogs(logsDir, retention, running);
      if (pruned.removed > 0) logger.info({ ...pruned, ...retention }, 'old job logs removed');
    } catch (err) {
      logger.warn({ err: errorMessage(err), logsDir }, 'job logs not pruned');
    }
  } while (await sleep(options.intervalMs ?? LOG_RETENTION_INTERVAL_MS, signal));
}
