import { describe, expect, it } from '@jest/globals';
import { parseNatsServers } from './nats-servers.js';

describe('parseNatsServers', () => {
  it('takes nats://, tls:// and host:port servers, comma-separated, with credentials or IPv6 hosts', () => {
    expect(parseNatsServers('nats://127.0.0.1:4222')).toEqual({ servers: ['nats://127.0.0.1:4222'] });
    expect(parseNatsServers('tls://nats-1.corp:4222, tls://nats-2.corp:4222,nats.corp:4222')).toEqual({
      servers: ['tls://nats-1.corp:4222', 'tls://nats-2.corp:4222', 'nats.corp:4222'],
    });
    expect(parseNatsServers('nats://user:secret@[::1]:4222/')).toEqual({
      servers: ['nats://user:secret@[::1]:4222/'],
    });
  });

  it('says what is wrong with the first entry that is not a NATS server', () => {
    expect(parseNatsServers('nats://a:4222,ws://b:8080')).toEqual({
      error:
        '"ws://b:8080": NATS over WebSocket is not supported; give the nats:// or tls:// address of the NATS server',
    });
    for (const bad of ['', 'http://a:4222', 'a', 'nats://a:4222/path', 'nats://a b:4222', 'nats://a:4222,']) {
      expect(parseNatsServers(bad)).toHaveProperty('error');
    }
    expect(parseNatsServers('https://nats.corp')).toEqual({
      error:
        '"https://nats.corp" is not a NATS server address; expected nats://host:4222, tls://host:4222 or host:4222',
    });
  });
});
