/**
 * A private nats-server in operator (JWT) mode with JetStream, so a test can give the agent the
 * exact credentials production gives it (agentPermissions) and see the server enforce them.
 * Needs nats-server on PATH.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeAccount, encodeOperator, encodeUser } from '@nats-io/jwt';
import { createAccount, createOperator, createUser, type KeyPair } from '@nats-io/nkeys';
import type { SubjectPermissions } from '@hearth/contracts';
import { waitUntil } from './fake-control-plane.js';

export const natsServerAvailable = spawnSync('nats-server', ['--version']).status === 0;

const UNLIMITED = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
  mem_storage: -1,
  disk_storage: -1,
  streams: -1,
  consumer: -1,
};

export class OperatorNatsServer {
  private constructor(
    private readonly proc: ChildProcess,
    private readonly dir: string,
    private readonly account: KeyPair,
    readonly url: string,
    readonly log: () => string,
  ) {}

  static async start(): Promise<OperatorNatsServer> {
    const operator = createOperator();
    const system = createAccount();
    const account = createAccount();
    const sysJwt = await encodeAccount('SYS', system, {}, { signer: operator });
    const accountJwt = await encodeAccount('HEARTH', account, { limits: UNLIMITED }, { signer: operator });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-nats-op-'));
    const config = [
      'listen: 127.0.0.1:-1',
      `jetstream: { store_dir: ${JSON.stringify(path.join(dir, 'js'))} }`,
      `operator: ${await encodeOperator('hearth-test', operator, { system_account: system.getPublicKey() })}`,
      `system_account: ${system.getPublicKey()}`,
      'resolver: MEMORY',
      `resolver_preload: { ${system.getPublicKey()}: ${sysJwt}, ${account.getPublicKey()}: ${accountJwt} }`,
    ].join('\n');
    fs.writeFileSync(path.join(dir, 'server.conf'), config);
    const proc = spawn('nats-server', ['-c', path.join(dir, 'server.conf')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    proc.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
    await waitUntil(() => log.includes('Server is ready'), 10_000, 'nats-server to start');
    const port = /Listening for client connections on [^:\s]+:(\d+)/.exec(log)?.[1];
    if (!port) throw new Error(`cannot read the nats-server port from its log:\n${log}`);
    return new OperatorNatsServer(proc, dir, account, `nats://127.0.0.1:${port}`, () => log);
  }

  /** A user of the account: unrestricted, or with exactly the given permissions. */
  async issueUser(
    name: string,
    permissions?: SubjectPermissions,
  ): Promise<{ jwt: string; seed: Uint8Array }> {
    const user = createUser();
    const claims = permissions ? { pub: permissions.publish, sub: permissions.subscribe } : {};
    const jwt = await encodeUser(name, user, this.account, claims);
    return { jwt, seed: user.getSeed() };
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = new Promise((resolve) => this.proc.once('exit', resolve));
      this.proc.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
