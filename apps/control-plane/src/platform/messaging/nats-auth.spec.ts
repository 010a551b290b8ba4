import { describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { decode, type Account, type Operator, type User } from '@nats-io/jwt';
import { createAccount, createUser } from '@nats-io/nkeys';
import { agentPermissions } from '@hearth/contracts';
import { generateNatsOperatorSecrets, NatsAuthority, renderServerConfig } from './nats-auth.js';

const secrets = generateNatsOperatorSecrets();
const authority = new NatsAuthority(secrets);

describe('NatsAuthority', () => {
  it('generates operator and account seeds of the right kinds', () => {
    expect(secrets.operatorSeed).toMatch(/^SO/);
    expect(secrets.accountSeed).toMatch(/^SA/);
    expect(secrets.systemAccountSeed).toMatch(/^SA/);
    expect(authority.operatorPublicKey).toMatch(/^O/);
    expect(authority.accountPublicKey).toMatch(/^A/);
    expect(authority.systemAccountPublicKey).not.toBe(authority.accountPublicKey);
  });

  it('refuses seeds of the wrong kind, and the same key for both accounts', () => {
    expect(() => new NatsAuthority({ ...secrets, operatorSeed: secrets.accountSeed })).toThrow(/operator/);
    expect(() => new NatsAuthority({ ...secrets, accountSeed: 'SAnotaseed' })).toThrow(
      /not a valid nkey seed/,
    );
    expect(() => new NatsAuthority({ ...secrets, systemAccountSeed: secrets.accountSeed })).toThrow(
      /different/,
    );
  });

  it('keeps the seeds out of what it shows', () => {
    const shown = JSON.stringify(authority) + String(authority);
    for (const seed of Object.values(secrets)) expect(shown).not.toContain(seed);
  });

  it('names the system account in the operator JWT', async () => {
    const claims = decode<Operator>(await authority.operatorJwt());
    expect(claims.sub).toBe(authority.operatorPublicKey);
    expect(claims.nats.system_account).toBe(authority.systemAccountPublicKey);
  });

  it('signs the account with explicit limits, JetStream on, bearer tokens off and the revocations', async () => {
    const user = createUser().getPublicKey();
    const claims = decode<Account>(await authority.accountJwt(new Map([[user, 1700000000]])));
    expect(claims.iss).toBe(authority.operatorPublicKey);
    expect(claims.sub).toBe(authority.accountPublicKey);
    expect(claims.nats.limits).toMatchObject({
      conn: -1,
      subs: -1,
      data: -1,
      payload: -1,
      imports: -1,
      exports: -1,
      wildcards: true,
      leaf: -1,
      mem_storage: -1,
      disk_storage: -1,
      streams: -1,
      consumer: -1,
      disallow_bearer: true,
    });
    expect(claims.nats.revocations).toEqual({ [user]: 1700000000 });
  });

  it('gives the system account connections but no JetStream', async () => {
    const claims = decode<Account>(await authority.systemAccountJwt());
    expect(claims.sub).toBe(authority.systemAccountPublicKey);
    expect(claims.nats.limits?.conn).toBe(-1);
    expect(claims.nats.limits?.mem_storage).toBeUndefined();
  });

  it("issues an agent JWT for the agent's own key with exactly the contract's permissions", async () => {
    const a = { tenantId: randomUUID(), agentId: randomUUID() };
    const publicKey = createUser().getPublicKey();
    const claims = decode<User>(await authority.issueAgentJwt({ ...a, publicKey }));
    expect(claims.sub).toBe(publicKey);
    expect(claims.iss).toBe(authority.accountPublicKey);
    expect(claims.name).toBe(`agent-${a.agentId}`);
    expect(claims.nats.pub?.allow).toEqual(agentPermissions(a).publish.allow);
    expect(claims.nats.sub?.allow).toEqual(agentPermissions(a).subscribe.allow);
    expect(claims.nats.bearer_token).toBe(false);
  });

  it('refuses to sign anything but a user public key for an agent', async () => {
    const a = { tenantId: randomUUID(), agentId: randomUUID() };
    await expect(
      authority.issueAgentJwt({ ...a, publicKey: createAccount().getPublicKey() }),
    ).rejects.toThrow(/user public key/);
    await expect(authority.issueAgentJwt({ ...a, publicKey: 'UNOTAKEY' })).rejects.toThrow(/user public key/);
  });

  it('issues service credentials with no subject restrictions', async () => {
    const creds = await authority.serviceCredentials('control-plane');
    const claims = decode<User>(creds.jwt);
    expect(claims.iss).toBe(authority.accountPublicKey);
    expect(new TextDecoder().decode(creds.seed)).toMatch(/^SU/);
    expect(claims.nats.pub?.allow ?? []).toEqual([]);
    expect(claims.nats.sub?.allow ?? []).toEqual([]);
  });
});

describe('renderServerConfig', () => {
  it('renders operator mode with a full resolver, both accounts preloaded, and no secrets', async () => {
    const config = await renderServerConfig(authority, {
      host: '127.0.0.1',
      port: 0,
      storeDir: '/var/lib/nats/js',
      resolverDir: '/var/lib/nats/accounts',
    });
    expect(config).toContain('listen: "127.0.0.1:-1"');
    expect(config).toMatch(/jetstream \{\n {2}store_dir: "\/var\/lib\/nats\/js"\n\}/);
    expect(config).toMatch(/^operator: "eyJ[^"]+"$/m);
    expect(config).toContain(`system_account: "${authority.systemAccountPublicKey}"`);
    expect(config).toMatch(
      /resolver: \{\n {2}type: full\n {2}dir: "\/var\/lib\/nats\/accounts"\n {2}allow_delete: false\n {2}interval: "2m"\n\}/,
    );
    expect(config).toMatch(new RegExp(`^ {2}${authority.accountPublicKey}: "eyJ[^"]+"$`, 'm'));
    expect(config).toMatch(new RegExp(`^ {2}${authority.systemAccountPublicKey}: "eyJ[^"]+"$`, 'm'));
    for (const seed of Object.values(secrets)) expect(config).not.toContain(seed);
    expect(config).not.toContain('tls');
  });

  it('adds TLS for client connections when given a certificate and key', async () => {
    const config = await renderServerConfig(authority, {
      host: '0.0.0.0',
      port: 4222,
      storeDir: '/data/js',
      resolverDir: '/data/jwt',
      tls: { certFile: '/etc/nats/tls/server.crt', keyFile: '/etc/nats/tls/server.key' },
    });
    expect(config).toMatch(
      /\ntls \{\n {2}cert_file: "\/etc\/nats\/tls\/server\.crt"\n {2}key_file: "\/etc\/nats\/tls\/server\.key"\n\}\n/,
    );
  });
});
