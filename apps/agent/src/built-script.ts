/**
 * Where a script of the build that runs on its own (a worker's entry) lies, given the module it
 * sits beside. Jest runs the TypeScript sources, which a worker cannot load: there it is the
 * build's copy under dist/ (the test command builds first).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function builtScript(besideModuleUrl: string, name: string): string {
  const here = fileURLToPath(besideModuleUrl);
  const dir = path.dirname(here) + path.sep;
  if (!here.endsWith('.ts')) return path.join(dir, name);
  const src = `${path.sep}src${path.sep}`;
  const at = dir.lastIndexOf(src);
  return path.join(dir.slice(0, at), 'dist', dir.slice(at + src.length), name);
}
