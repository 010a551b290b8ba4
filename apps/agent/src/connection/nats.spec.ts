import { describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createUser } from '@nats-io/nkeys';
import type { AgentIdentity } from './credentials.js';
import { connectionOptions, natsTarget } from './nats.js';

const identity = {
  file: { agentId: randomUUID(), natsJwt: null },
  seed: createUser().getSeed(),
} as unknown as AgentIdentity;

describe('the NATS connection options', () => {
  it('require TLS (an empty tls object) for a server beyond this machine, however it is named', () => {
    for (const servers of [
      ['nats://nats.corp:4222'],
      ['10.0.0.5:4222'],
      ['nats://127.0.0.1:4222', 'nats.corp:4222'],
    ])
      expect(connectionOptions(identity, natsTarget(servers, false))).toMatchObject({ servers, tls: {} });
  });

  it('require TLS for a tls:// server even on this machine and with --allow-plaintext', () => {
    expect(connectionOptions(identity, natsTarget(['tls://127.0.0.1:4222'], true)).tls).toEqual({});
  });

  it('leave TLS to the server (taken when offered) on this machine, or beyond it with --allow-plaintext', () => {
    expect(
      connectionOptions(identity, natsTarget(['nats://127.0.0.1:4222', 'localhost:4223'], false)),
    ).not.toHaveProperty('tls');
    expect(connectionOptions(identity, natsTarget(['nats://nats.corp:4222'], true))).not.toHaveProperty(
      'tls',
    );
  });
});
