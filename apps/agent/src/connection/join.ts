/**
 * `hearth-agent join`: enrolls this machine. The agent makes its own NATS user key pair, keeps the
 * seed in its data dir (0600, never sent), and trades a one-time join token plus its public key
 * for an identity and NATS credentials.
 */
import { createUser } from '@nats-io/nkeys';
import fs from 'node:fs';
import path from 'node:path';
import { JoinRequest, JoinResponse } from '@hearth/contracts';
import type { JoinConfig } from '../config/config.js';
import { postJoinRequest } from '../egress/guard.js';
import { EgressLedger } from '../egress/ledger.js';
import { errorMessage } from '../logger.js';
import { detectGpus, type ToolRunner } from '../telemetry/gpus.js';
import { systemInfo } from '../telemetry/system-info.js';
import {
  AGENT_FILE,
  LEDGER_FILE,
  SEED_FILE,
  agentFileExists,
  ensureDataDir,
  writeAgentFile,
  writePrivateFile,
  type AgentFile,
} from './credentials.js';

/** Why joining failed, in words for the person running the command. */
export class JoinError extends Error {
  override readonly name = 'JoinError';
}

export interface JoinDeps {
  /** GPU tool runner (tests pass a stub so no vendor tool runs). */
  runTool?: ToolRunner;
  timeoutMs?: number;
}

export async function join(config: JoinConfig, deps: JoinDeps = {}): Promise<AgentFile> {
  ensureDataDir(config.dataDir);
  if (agentFileExists(config.dataDir) && !config.force) {
    throw new JoinError(
      `already joined: ${path.join(config.dataDir, AGENT_FILE)} exists; pass --force to join again with a new identity`,
    );
  }
  const system = systemInfo(await detectGpus(deps.runTool));
  const keys = createUser();
  const parsed = JoinRequest.safeParse({
    token: config.token,
    publicKey: keys.getPublicKey(),
    labels: config.labels,
    system,
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new JoinError(`invalid join request: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }

  // The seed is on disk before any credential for its public key exists, and replaces the old
  // seed only once the control plane has accepted it.
  const seedPath = path.join(config.dataDir, SEED_FILE);
  const pendingSeed = `${seedPath}.pending`;
  writePrivateFile(pendingSeed, keys.getSeed());
  keys.clear();
  try {
    const response = await enroll(config, parsed.data, deps.timeoutMs);
    fs.renameSync(pendingSeed, seedPath);
    const file: AgentFile = { ...response, controlPlaneUrl: config.url, labels: { ...config.labels } };
    writeAgentFile(config.dataDir, file);
    return file;
  } finally {
    fs.rmSync(pendingSeed, { force: true });
  }
}

async function enroll(config: JoinConfig, request: JoinRequest, timeoutMs?: number): Promise<JoinResponse> {
  const ledger = EgressLedger.open(path.join(config.dataDir, LEDGER_FILE));
  let response: Response;
  try {
    response = await postJoinRequest(ledger, config.url, request, timeoutMs);
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : errorMessage(err);
    throw new JoinError(`cannot reach the control plane at ${config.url}: ${cause}`);
  } finally {
    ledger.close();
  }
  const text = await response.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // reported below
  }
  if (!response.ok) throw new JoinError(httpErrorMessage(response, body));
  const parsed = JoinResponse.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new JoinError(
      `the control plane sent an invalid join response: ${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
  }
  return parsed.data;
}

/** The control plane's `{ error: { code, message } }`, or the HTTP status when the body is not that. */
function httpErrorMessage(response: Response, body: unknown): string {
  const error = typeof body === 'object' && body !== null && 'error' in body ? body.error : null;
  if (
    typeof error === 'object' &&
    error !== null &&
    'message' in error &&
    typeof error.message === 'string'
  ) {
    const code = 'code' in error && typeof error.code === 'string' ? error.code : null;
    const message = error.message.slice(0, 500);
    return `join refused: ${message} (${code ? `${code}, ` : ''}HTTP ${response.status})`;
  }
  return `join refused: HTTP ${response.status} ${response.statusText}`.trim();
}
