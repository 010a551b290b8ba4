import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  cpuPercent,
  parseDiskstats,
  parseMeminfo,
  parseNetDev,
  parseProcStat,
  perSecond,
  readProcSnapshot,
} from './procfs.js';

const procFixture = new URL('./fixtures/proc/', import.meta.url).pathname;
const fixture = (name: string) => fs.readFileSync(path.join(procFixture, name), 'utf8');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-procfs-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('/proc parsers', () => {
  it('reads the aggregate CPU line, without counting guest time twice', () => {
    const total = 4705351 + 2081 + 1033958 + 72815427 + 48127 + 0 + 36851 + 1200;
    expect(parseProcStat(fixture('stat'))).toEqual({ busy: total - 72815427 - 48127, total });
    expect(parseProcStat('cpu  10 0 5 85\n')).toEqual({ busy: 15, total: 100 });
    expect(parseProcStat('cpu0 1 2 3 4\n')).toBeNull();
    expect(parseProcStat('cpu  1 2 x 4\n')).toBeNull();
  });

  it('computes CPU utilisation from two snapshots (iowait counts as idle)', () => {
    expect(cpuPercent({ busy: 100, total: 1000 }, { busy: 475, total: 2000 })).toBe(37.5);
    expect(cpuPercent({ busy: 100, total: 1000 }, { busy: 100, total: 1000 })).toBeNull();
  });

  it('reads memory as used = total - available, in MiB', () => {
    expect(parseMeminfo(fixture('meminfo'))).toEqual({
      totalMiB: Math.round(2113248124 / 1024),
      usedMiB: Math.round((2113248124 - 1688413912) / 1024),
    });
    // Old kernels have no MemAvailable.
    const old = 'MemTotal: 1048576 kB\nMemFree: 262144 kB\nBuffers: 65536 kB\nCached: 196608 kB\n';
    expect(parseMeminfo(old)).toEqual({ totalMiB: 1024, usedMiB: 512 });
    expect(parseMeminfo('garbage')).toBeNull();
  });

  it('reads whole disks only, in bytes (partitions, dm and loop devices would count twice)', () => {
    const disks = parseDiskstats(fixture('diskstats'));
    expect([...disks.keys()]).toEqual(['nvme0n1', 'nvme1n1', 'sda']);
    expect(disks.get('nvme0n1')).toEqual({ read: 1953125000 * 512, write: 976562500 * 512 });
  });

  it('reads network interfaces without lo', () => {
    const net = parseNetDev(fixture('net/dev'));
    expect([...net.keys()]).toEqual(['eno1', 'ibp12s0', 'docker0']);
    expect(net.get('eno1')).toEqual({ rx: 98765432109, tx: 12345678901 });
    expect(parseNetDev('eth0:123 1 0 0 0 0 0 0 456 2 0 0 0 0 0 0\n').get('eth0')).toEqual({
      rx: 123,
      tx: 456,
    });
  });

  it('turns counters into rates, ignoring devices that came, went or were reset', () => {
    const before = new Map([
      ['eno1', { rx: 1000, tx: 5000 }],
      ['veth1', { rx: 10, tx: 10 }],
      ['eno2', { rx: 9000, tx: 0 }],
    ]);
    const after = new Map([
      ['eno1', { rx: 21000, tx: 6000 }],
      ['veth2', { rx: 1e9, tx: 1e9 }],
      ['eno2', { rx: 100, tx: 400 }],
    ]);
    expect(perSecond(before, after, 2, ['rx', 'tx'])).toEqual({ rx: 10000, tx: 700 });
    expect(perSecond(before, after, 0, ['rx', 'tx'])).toBeNull();
  });

  it('reads a /proc tree from any root, and gives null for what is not there', async () => {
    const snapshot = await readProcSnapshot(procFixture);
    expect(snapshot.cpu?.total).toBeGreaterThan(0);
    expect(snapshot.memory?.totalMiB).toBe(Math.round(2113248124 / 1024));
    expect(snapshot.disk?.size).toBe(3);
    expect(snapshot.net?.size).toBe(3);
    expect(await readProcSnapshot(root)).toEqual({ cpu: null, memory: null, disk: null, net: null });
  });
});
