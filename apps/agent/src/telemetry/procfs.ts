/**
 * Host CPU, memory, disk and network from /proc. The parsers take the files' text; the reader takes
 * the root directory (tests point it at a fixture tree). Counters are cumulative in /proc, so CPU
 * utilisation and I/O rates come from the difference between two snapshots.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** Aggregate CPU time of the host, in clock ticks (USER_HZ), summed over every CPU. */
export interface CpuTimes {
  busy: number;
  total: number;
}

export interface MemoryInfo {
  usedMiB: number;
  totalMiB: number;
}

/** Cumulative bytes per device (disk: read/write) or interface (network: rx/tx). */
export type DiskCounters = Map<string, { read: number; write: number }>;
export type NetCounters = Map<string, { rx: number; tx: number }>;

export interface ProcSnapshot {
  cpu: CpuTimes | null;
  memory: MemoryInfo | null;
  disk: DiskCounters | null;
  net: NetCounters | null;
}

const SECTOR_BYTES = 512; // /proc/diskstats counts 512-byte sectors whatever the device's own size
/** Whole disks only: partitions (sda1, nvme0n1p1) and stacked devices (dm-*, md*) would count twice. */
const WHOLE_DISK = /^(sd[a-z]+|vd[a-z]+|xvd[a-z]+|hd[a-z]+|nvme\d+n\d+|mmcblk\d+)$/;

/** The first line of /proc/stat: "cpu  user nice system idle iowait irq softirq steal guest guest_nice". */
export function parseProcStat(text: string): CpuTimes | null {
  const line = text.split('\n').find((l) => /^cpu\s/.test(l));
  if (!line) return null;
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  if (values.length < 4 || values.some((v) => !Number.isFinite(v) || v < 0)) return null;
  // guest and guest_nice are already inside user and nice: only the first eight add up.
  const [user, nice, system, idle, iowait = 0, irq = 0, softirq = 0, steal = 0] = values;
  const total = user + nice + system + idle + iowait + irq + softirq + steal;
  return { busy: total - idle - iowait, total };
}

export function parseMeminfo(text: string): MemoryInfo | null {
  const kb = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(\w+):\s+(\d+)\s*kB$/.exec(line.trim());
    if (match) kb.set(match[1], Number(match[2]));
  }
  const total = kb.get('MemTotal');
  if (total === undefined) return null;
  // Kernels before 3.14 have no MemAvailable: free + page cache is the classic estimate.
  const available =
    kb.get('MemAvailable') ?? (kb.get('MemFree') ?? 0) + (kb.get('Buffers') ?? 0) + (kb.get('Cached') ?? 0);
  return {
    usedMiB: Math.round(Math.max(0, total - available) / 1024),
    totalMiB: Math.round(total / 1024),
  };
}

/** "major minor name reads merged sectors ms writes merged sectors ms …", whole disks only. */
export function parseDiskstats(text: string): DiskCounters {
  const disks: DiskCounters = new Map();
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || !WHOLE_DISK.test(fields[2])) continue;
    const read = Number(fields[5]);
    const write = Number(fields[9]);
    if (!Number.isSafeInteger(read) || !Number.isSafeInteger(write)) continue;
    disks.set(fields[2], { read: read * SECTOR_BYTES, write: write * SECTOR_BYTES });
  }
  return disks;
}

/** "iface: rx_bytes packets errs drop fifo frame compressed multicast tx_bytes …", without lo. */
export function parseNetDev(text: string): NetCounters {
  const interfaces: NetCounters = new Map();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue; // the two header lines
    const name = line.slice(0, colon).trim();
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/);
    if (name === 'lo' || name === '' || fields.length < 9) continue;
    const rx = Number(fields[0]);
    const tx = Number(fields[8]);
    if (!Number.isSafeInteger(rx) || !Number.isSafeInteger(tx)) continue;
    interfaces.set(name, { rx, tx });
  }
  return interfaces;
}

/** CPU utilisation (%) between two snapshots; null without time passing between them. */
export function cpuPercent(before: CpuTimes, after: CpuTimes): number | null {
  const total = after.total - before.total;
  if (total <= 0) return null;
  const busy = Math.min(Math.max(after.busy - before.busy, 0), total);
  return Math.round((busy / total) * 1000) / 10;
}

/**
 * Bytes per second between two snapshots, summed over the devices present in both. A device that
 * came or went (a container's veth) or whose counter went back (reset) adds nothing.
 */
export function perSecond<K extends string>(
  before: ReadonlyMap<string, Record<K, number>>,
  after: ReadonlyMap<string, Record<K, number>>,
  seconds: number,
  keys: readonly K[],
): Record<K, number> | null {
  if (!(seconds > 0)) return null;
  const sums = Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
  for (const [name, now] of after) {
    const then = before.get(name);
    if (!then) continue;
    for (const k of keys) if (now[k] >= then[k]) sums[k] += now[k] - then[k];
  }
  for (const k of keys) sums[k] = Math.round(sums[k] / seconds);
  return sums;
}

/** Reads the host files under root; a file that cannot be read (not Linux, no permission) is null. */
export async function readProcSnapshot(root = '/proc'): Promise<ProcSnapshot> {
  const [stat, meminfo, diskstats, netDev] = await Promise.all(
    ['stat', 'meminfo', 'diskstats', 'net/dev'].map((file) =>
      readFile(path.join(root, file), 'utf8').catch(() => null),
    ),
  );
  return {
    cpu: stat === null ? null : parseProcStat(stat),
    memory: meminfo === null ? null : parseMeminfo(meminfo),
    disk: diskstats === null ? null : parseDiskstats(diskstats),
    net: netDev === null ? null : parseNetDev(netDev),
  };
}
