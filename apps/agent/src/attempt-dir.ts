import fs from 'node:fs';
import path from 'node:path';

/**
 * Removes an attempt's directory, `<root>/<job>/<attempt>` (its work dir, or what a failed run
 * left in the artifact root), and the job's directory when that leaves it empty.
 */
export async function removeAttemptDir(attemptDir: string): Promise<void> {
  await fs.promises.rm(attemptDir, { recursive: true, force: true });
  await fs.promises.rmdir(path.dirname(attemptDir)).catch(() => undefined); // another attempt's is there
}
