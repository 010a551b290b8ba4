import { readFileSync } from 'node:fs';

/** The agent's version, from apps/agent/package.json (one level above both src/ and dist/). */
export const AGENT_VERSION: string = (() => {
  const pkg: unknown = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  const version = typeof pkg === 'object' && pkg !== null && 'version' in pkg ? pkg.version : undefined;
  return typeof version === 'string' ? version.slice(0, 32) : '0.0.0';
})();
