import { describe, expect, it } from '@jest/globals';
import { ConfigError, loadConfig } from './config.js';

describe('loadConfig: NATS servers', () => {
  it('normalises NATS_URL and AGENT_NATS_URL lists; agents are told NATS_URL unless AGENT_NATS_URL is set', () => {
    expect(
      loadConfig({ NATS_URL: 'nats://10.0.0.1:4222, nats://10.0.0.2:4222', AGENT_NATS_URL: undefined }).nats,
    ).toMatchObject({
      url: 'nats://10.0.0.1:4222,nats://10.0.0.2:4222',
      agentUrl: 'nats://10.0.0.1:4222,nats://10.0.0.2:4222',
    });
    expect(
      loadConfig({ NATS_URL: 'nats://10.0.0.1:4222', AGENT_NATS_URL: 'tls://nats.hearth.example.com:4222' })
        .nats,
    ).toMatchObject({ url: 'nats://10.0.0.1:4222', agentUrl: 'tls://nats.hearth.example.com:4222' });
    // An empty variable is an unset one (the demo then starts its own nats-server).
    expect(loadConfig({ NATS_URL: '', AGENT_NATS_URL: '' }).nats).toMatchObject({
      url: undefined,
      agentUrl: undefined,
    });
  });

  it('refuses at boot a server the agents could not dial, naming the variable', () => {
    const refused = (overrides: Record<string, string>) => {
      try {
        loadConfig(overrides);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      throw new Error('loadConfig accepted it');
    };
    expect(refused({ AGENT_NATS_URL: 'wss://nats.hearth.example.com' })).toBe(
      'invalid configuration:\n  AGENT_NATS_URL: "wss://nats.hearth.example.com": NATS over WebSocket is not ' +
        'supported; give the nats:// or tls:// address of the NATS server',
    );
    expect(refused({ NATS_URL: 'localhost' })).toBe(
      'invalid configuration:\n  NATS_URL: "localhost" is not a NATS server address; expected nats://host:4222, ' +
        'tls://host:4222 or host:4222',
    );
  });
});
