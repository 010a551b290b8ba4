import { describe, expect, it } from '@jest/globals';
import { isLoopbackHost, natsTlsRequired, parseNatsServers } from './nats-servers.js';

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

describe('isLoopbackHost', () => {
  it('knows the names and addresses of this machine, and nothing else', () => {
    for (const host of [
      'localhost',
      'LOCALHOST',
      'agent.localhost',
      '127.0.0.1',
      '127.9.8.7',
      '::1',
      '[::1]',
      '::ffff:127.0.0.1',
    ])
      expect([host, isLoopbackHost(host)]).toEqual([host, true]);
    for (const host of [
      '10.0.0.5',
      '192.168.1.10',
      '0.0.0.0',
      '::',
      'nats.corp',
      '127.0.0.1.nip.io',
      'localhost.corp',
      '127.0.0.256',
      '[::2]',
      'fe80::1',
    ])
      expect([host, isLoopbackHost(host)]).toEqual([host, false]);
  });
});

describe('natsTlsRequired', () => {
  it('requires TLS for any tls:// server, whatever the caller asks', () => {
    expect(natsTlsRequired(['tls://127.0.0.1:4222'], { beyondLoopback: false })).toBe(true);
    expect(
      natsTlsRequired(['nats://127.0.0.1:4222', 'tls://localhost:4223'], { beyondLoopback: false }),
    ).toBe(true);
    expect(natsTlsRequired(['nats://nats.corp:4222', 'nats.corp:4223'], { beyondLoopback: false })).toBe(
      false,
    );
  });

  it('requires TLS for a server beyond this machine when asked to, however it is written', () => {
    const beyond = { beyondLoopback: true };
    expect(
      natsTlsRequired(['nats://127.0.0.1:4222', 'localhost:4223', 'nats://u:p@[::1]:4224/'], beyond),
    ).toBe(false);
    expect(natsTlsRequired(['nats://nats.corp:4222'], beyond)).toBe(true);
    expect(natsTlsRequired(['10.0.0.5:4222'], beyond)).toBe(true);
    expect(natsTlsRequired(['nats://127.0.0.1:4222', 'nats://u:p@[fd00::5]:4222'], beyond)).toBe(true);
  });
});
