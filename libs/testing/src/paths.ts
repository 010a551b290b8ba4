import { fileURLToPath } from 'node:url';

/** The repository root, from this file in src/ or dist/. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const HEARTH_BIN = `${REPO_ROOT}apps/control-plane/bin/hearth.js`;
export const AGENT_BIN = `${REPO_ROOT}apps/agent/bin/hearth-agent.js`;
