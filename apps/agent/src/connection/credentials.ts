/**
 * The agent's data dir: its identity (agent.json) and its NATS user seed (agent.seed). Both are
 * written with mode 0600 in a 0700 dir; the seed never leaves the dir.
 */
import fs from 'node:fs';
import path from 'node:path';
import { JoinRequest, JoinResponse, type AgentAddress, type ParseResult } from '@hearth/contracts';

export const AGENT_FILE = 'agent.json';
export const SEED_FILE = 'agent.seed';
export const LEDGER_FILE = 'egress.ledger.jsonl';

/** What `join` stores and `run` reads back: the JoinResponse plus where it came from and the labels. */
export interface AgentFile extends JoinResponse {
  controlPlaneUrl: string;
  labels: Record<string, string>;
}

/** Validates agent.json with the contract's own schemas; the error is a short line for the user. */
export function parseAgentFile(json: unknown): ParseResult<AgentFile> {
  if (typeof json !== 'object' || json === null) return { ok: false, error: 'not an object' };
  const { controlPlaneUrl, labels, ...response } = json as Record<string, unknown>;
  if (typeof controlPlaneUrl !== 'string' || controlPlaneUrl === '') {
    return { ok: false, error: 'controlPlaneUrl: expected a string' };
  }
  const parsedLabels = JoinRequest.shape.labels.safeParse(labels);
  if (!parsedLabels.success) return { ok: false, error: `labels: ${parsedLabels.error.issues[0].message}` };
  const parsed = JoinResponse.safeParse(response);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, error: `${issue.path.join('.') || '(root)'}: ${issue.message}` };
  }
  return { ok: true, value: { ...parsed.data, controlPlaneUrl, labels: parsedLabels.data } };
}

export interface AgentIdentity {
  readonly file: AgentFile;
  /** The nkey seed as the bytes of its text form, as nats.js authenticators take it. Secret. */
  readonly seed: Uint8Array;
  readonly address: AgentAddress;
}

/** Why the data dir cannot be used; its message is shown to the user as is. */
export class DataDirError extends Error {
  override readonly name = 'DataDirError';
}

export function ensureDataDir(dataDir: string): void {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dataDir, 0o700);
}

export function agentFileExists(dataDir: string): boolean {
  return fs.existsSync(path.join(dataDir, AGENT_FILE));
}

/** Writes a private file atomically: a 0600 temp file beside it, then a rename. */
export function writePrivateFile(file: string, content: string | Uint8Array): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, content, { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
}

export function writeAgentFile(dataDir: string, file: AgentFile): void {
  const checked = parseAgentFile(file);
  if (!checked.ok) throw new DataDirError(`refusing to write an invalid ${AGENT_FILE}: ${checked.error}`);
  writePrivateFile(path.join(dataDir, AGENT_FILE), `${JSON.stringify(checked.value, null, 2)}\n`);
}

/** Reads agent.json and the seed; a missing or broken data dir is a DataDirError. */
export function loadIdentity(dataDir: string): AgentIdentity {
  const agentPath = path.join(dataDir, AGENT_FILE);
  const seedPath = path.join(dataDir, SEED_FILE);
  let raw: string;
  try {
    raw = fs.readFileSync(agentPath, 'utf8');
  } catch {
    throw new DataDirError(`${agentPath} not found: run "hearth-agent join" first`);
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new DataDirError(`${agentPath} is not JSON`);
  }
  const parsed = parseAgentFile(json);
  if (!parsed.ok) throw new DataDirError(`${agentPath} is invalid: ${parsed.error}`);
  let seed: Uint8Array;
  try {
    seed = new Uint8Array(fs.readFileSync(seedPath));
  } catch {
    throw new DataDirError(`${seedPath} not found: run "hearth-agent join" again`);
  }
  // As ssh does with a private key: one that other users may read or write is refused, not used.
  const mode = fs.statSync(seedPath).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new DataDirError(
      `${seedPath} is open to other users (mode ${mode.toString(8).padStart(4, '0')}) and holds the agent's ` +
        `private key: run "chmod 600 ${seedPath}" as the agent's user, and if someone else may have read it, ` +
        `revoke this agent and join again`,
    );
  }
  const text = new TextDecoder().decode(seed).trim();
  if (!/^SU[A-Z2-7]{56}$/.test(text)) throw new DataDirError(`${seedPath} does not hold a NATS user seed`);
  const file = parsed.value;
  return {
    file,
    seed: new TextEncoder().encode(text),
    address: { tenantId: file.organizationId, agentId: file.agentId },
  };
}
