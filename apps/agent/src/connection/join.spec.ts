import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fromSeed } from '@nats-io/nkeys';
import { JOIN_PATH, JoinRequest } from '@hearth/contracts';
import { parseJoinConfig } from '../config/config.js';
import { DataDirError, loadIdentity } from './credentials.js';
import { JoinError, join } from './join.js';

/** A stand-in for the control plane's join endpoint, over a real socket. */
let server: http.Server;
let baseUrl: string;
let answer: { status: number; body: unknown };
let received: { path: string; body: string }[];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push({ path: req.url ?? '', body });
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

let dataDir: string;
const noGpuTools = { runTool: async () => null };
const identity = {
  agentId: randomUUID(),
  organizationId: randomUUID(),
  natsServers: ['nats://nats.example.com:4222'],
  natsJwt: 'eyJ0eXAiOiJKV1QifQ.e30.sig',
  heartbeatSeconds: 10,
};

beforeEach(() => {
  dataDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-join-')), 'agent');
  answer = { status: 200, body: identity };
  received = [];
});
afterEach(() => fs.rmSync(path.dirname(dataDir), { recursive: true, force: true }));

const config = (extra: { force?: boolean; label?: string[] } = {}) =>
  parseJoinConfig({ url: baseUrl, token: 'join-token-123', dataDir, ...extra }, {});

describe('join', () => {
  it('enrolls, stores the identity and the seed privately, and sends only the public key', async () => {
    const file = await join(config({ label: ['zone=eu-west', 'gpu=a100'] }), noGpuTools);
    expect(file.agentId).toBe(identity.agentId);

    expect(fs.statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(dataDir, 'agent.json')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(dataDir, 'agent.seed')).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dataDir).sort()).toEqual(['agent.json', 'agent.seed', 'egress.ledger.jsonl']);

    const seed = fs.readFileSync(path.join(dataDir, 'agent.seed'), 'utf8');
    const [request] = received;
    expect(request.path).toBe(JOIN_PATH);
    const body = JoinRequest.parse(JSON.parse(request.body));
    expect(body.publicKey).toBe(fromSeed(new TextEncoder().encode(seed)).getPublicKey());
    expect(body.token).toBe('join-token-123');
    expect(body.labels).toEqual({ zone: 'eu-west', gpu: 'a100' });
    expect(request.body).not.toContain(seed);

    const stored = loadIdentity(dataDir);
    expect(stored.file).toEqual({
      ...identity,
      controlPlaneUrl: baseUrl,
      labels: { zone: 'eu-west', gpu: 'a100' },
    });
    expect(stored.address).toEqual({ tenantId: identity.organizationId, agentId: identity.agentId });
    const ledger = fs.readFileSync(path.join(dataDir, 'egress.ledger.jsonl'), 'utf8');
    expect(ledger).not.toContain('join-token-123');
  });

  it('refuses to load a seed that other users may read or write, saying how to fix it', async () => {
    await join(config(), noGpuTools);
    const seedPath = path.join(dataDir, 'agent.seed');
    for (const mode of [0o644, 0o640, 0o602]) {
      fs.chmodSync(seedPath, mode);
      expect(() => loadIdentity(dataDir)).toThrow(DataDirError);
      expect(() => loadIdentity(dataDir)).toThrow(
        `${seedPath} is open to other users (mode 0${mode.toString(8)}) and holds the agent's private key: ` +
          `run "chmod 600 ${seedPath}"`,
      );
    }
    fs.chmodSync(seedPath, 0o400);
    expect(loadIdentity(dataDir).file.agentId).toBe(identity.agentId);
  });

  it('shows the control plane’s message when the token is refused, and stores nothing', async () => {
    answer = {
      status: 409,
      body: { error: { code: 'JOIN_TOKEN_USED', message: 'this join token was already used' } },
    };
    const attempt = join(config(), noGpuTools);
    await expect(attempt).rejects.toThrow(JoinError);
    await expect(attempt).rejects.toThrow(
      'join refused: this join token was already used (JOIN_TOKEN_USED, HTTP 409)',
    );
    expect(fs.readdirSync(dataDir).filter((f) => f !== 'egress.ledger.jsonl')).toEqual([]);
  });

  it('refuses to join twice unless forced, and a forced join replaces the key', async () => {
    await join(config(), noGpuTools);
    const firstSeed = fs.readFileSync(path.join(dataDir, 'agent.seed'), 'utf8');
    await expect(join(config(), noGpuTools)).rejects.toThrow(/already joined.*--force/);
    await join(config({ force: true }), noGpuTools);
    expect(fs.readFileSync(path.join(dataDir, 'agent.seed'), 'utf8')).not.toBe(firstSeed);
    expect(fs.statSync(path.join(dataDir, 'agent.seed')).mode & 0o777).toBe(0o600);
  });

  it('keeps the existing identity when a forced join is refused', async () => {
    await join(config(), noGpuTools);
    const seed = fs.readFileSync(path.join(dataDir, 'agent.seed'), 'utf8');
    answer = { status: 401, body: { error: { code: 'JOIN_TOKEN_EXPIRED', message: 'join token expired' } } };
    await expect(join(config({ force: true }), noGpuTools)).rejects.toThrow('join token expired');
    expect(fs.readFileSync(path.join(dataDir, 'agent.seed'), 'utf8')).toBe(seed);
    expect(loadIdentity(dataDir).file.agentId).toBe(identity.agentId);
  });

  it('rejects an invalid join response', async () => {
    answer = { status: 200, body: { ...identity, agentId: 'not-a-uuid' } };
    await expect(join(config(), noGpuTools)).rejects.toThrow(/invalid join response: agentId/);
    expect(fs.existsSync(path.join(dataDir, 'agent.json'))).toBe(false);
    // A server the agent could not dial (its client speaks TCP, not WebSocket) is refused now, not at run.
    answer = { status: 200, body: { ...identity, natsServers: ['wss://nats.example.com'] } };
    await expect(join(config(), noGpuTools)).rejects.toThrow(
      'the control plane sent an invalid join response: natsServers.0: is not a NATS server address',
    );
    expect(fs.existsSync(path.join(dataDir, 'agent.json'))).toBe(false);
  });

  it('rejects labels the contract does not allow before sending anything', async () => {
    await expect(join(config({ label: ['Bad Key=x'] }), noGpuTools)).rejects.toThrow(
      /invalid join request: labels/,
    );
    expect(received).toHaveLength(0);
  });

  it('says when the control plane cannot be reached', async () => {
    const closed = parseJoinConfig({ url: 'http://127.0.0.1:1', token: 't', dataDir }, {});
    await expect(join(closed, noGpuTools)).rejects.toThrow(
      /cannot reach the control plane at http:\/\/127.0.0.1:1/,
    );
  });
});
