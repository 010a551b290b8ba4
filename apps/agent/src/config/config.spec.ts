import { describe, expect, it } from '@jest/globals';
import path from 'node:path';
import { ConfigError, parseJoinConfig, parseRunConfig } from './config.js';

describe('parseRunConfig', () => {
  it('applies defaults and freezes the result', () => {
    const config = parseRunConfig({ dataDir: 'data' }, { PATH: '/bin', TMPDIR: '/scratch' });
    expect(config).toEqual({
      dataDir: path.resolve('data'),
      maxJobs: 2,
      natsUrl: null,
      drainSeconds: 30,
      logLevel: 'info',
      jobBaseEnv: { PATH: '/bin', TMPDIR: '/scratch' },
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.jobBaseEnv)).toBe(true);
  });

  it('reads the environment, and flags win over it', () => {
    const env = {
      HEARTH_AGENT_DATA_DIR: '/var/lib/hearth',
      HEARTH_AGENT_MAX_JOBS: '8',
      HEARTH_AGENT_LOG_LEVEL: 'debug',
      LANG: 'C.UTF-8',
    };
    expect(parseRunConfig({}, env)).toMatchObject({
      dataDir: '/var/lib/hearth',
      maxJobs: 8,
      logLevel: 'debug',
    });
    expect(parseRunConfig({}, env).jobBaseEnv.LANG).toBe('C.UTF-8');
    expect(parseRunConfig({ dataDir: '/d', maxJobs: '3', logLevel: 'warn' }, env)).toMatchObject({
      dataDir: '/d',
      maxJobs: 3,
      logLevel: 'warn',
    });
  });

  it('rejects bad values with a message naming the flag', () => {
    expect(() => parseRunConfig({}, {})).toThrow(ConfigError);
    expect(() => parseRunConfig({ dataDir: '/d', maxJobs: '0' }, {})).toThrow(
      /--max-jobs must be an integer/,
    );
    expect(() => parseRunConfig({ dataDir: '/d', maxJobs: '1.5' }, {})).toThrow(/--max-jobs/);
    expect(() => parseRunConfig({ dataDir: '/d', logLevel: 'loud' }, {})).toThrow(/log level/);
    expect(() => parseRunConfig({ dataDir: '/d', natsUrl: 'http://x' }, {})).toThrow(/--nats-url/);
  });
});

describe('parseJoinConfig', () => {
  it('parses labels and normalises the URL', () => {
    const config = parseJoinConfig(
      { url: 'https://hearth.example.com/', token: 't', dataDir: '/d', label: ['zone=eu', 'note=a=b'] },
      {},
    );
    expect(config).toMatchObject({ url: 'https://hearth.example.com', labels: { zone: 'eu', note: 'a=b' } });
  });

  it('takes the token from the environment so it need not appear in ps', () => {
    expect(
      parseJoinConfig({ url: 'http://cp', dataDir: '/d' }, { HEARTH_AGENT_JOIN_TOKEN: 'secret' }).token,
    ).toBe('secret');
    expect(() => parseJoinConfig({ url: 'http://cp', dataDir: '/d' }, {})).toThrow(/join token is required/);
  });

  it('rejects a malformed label or URL', () => {
    expect(() =>
      parseJoinConfig({ url: 'http://cp', token: 't', dataDir: '/d', label: ['novalue'] }, {}),
    ).toThrow(/key=value/);
    expect(() => parseJoinConfig({ url: 'ftp://cp', token: 't', dataDir: '/d' }, {})).toThrow(/http/);
  });
});
