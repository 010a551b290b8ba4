/**
 * A fake `nvidia-smi` for end-to-end tests: put its folder first on an agent's PATH and the agent
 * sees NVIDIA GPUs. It answers the exact queries the agent makes, in the real tool's CSV format, and
 * behaves like the real tool where it matters: a GPU is in use by the processes whose environment
 * names it in CUDA_VISIBLE_DEVICES (what the agent sets for a job it assigned GPUs to), and reports
 * them (pid, GPU uuid, memory) in --query-compute-apps; a used GPU is busy, the others idle.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface FakeGpus {
  /** Put this first on the agent's PATH. */
  binDir: string;
  uuids: string[];
  name: string;
}

export function writeFakeNvidiaSmi(dir: string, options: { gpus?: number; busyPct?: number } = {}): FakeGpus {
  const count = options.gpus ?? 4;
  const tag = Math.random().toString(16).slice(2, 10).padEnd(8, '0');
  const uuids = Array.from(
    { length: count },
    (_, i) => `GPU-${tag}-0000-4000-8000-${i.toString().padStart(12, '0')}`,
  );
  const name = 'NVIDIA H100 80GB HBM3';
  const binDir = join(dir, 'fake-gpu-bin');
  mkdirSync(binDir, { recursive: true });
  const script = `#!/usr/bin/env node
// Fake nvidia-smi (libs/testing/src/fake-gpus.ts).
const fs = require('node:fs');
const uuids = ${JSON.stringify(uuids)};
const name = ${JSON.stringify(name)};
const busy = ${options.busyPct ?? 87};
const args = process.argv.slice(2);
const query = (args.find((a) => a.startsWith('--query-')) || '');
/** pid -> the uuids of ours its CUDA_VISIBLE_DEVICES names. */
function users() {
  const out = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p))) {
    let env;
    try { env = fs.readFileSync('/proc/' + pid + '/environ', 'utf8'); } catch { continue; }
    const line = env.split('\\0').find((l) => l.startsWith('CUDA_VISIBLE_DEVICES='));
    if (!line) continue;
    const mine = line.slice('CUDA_VISIBLE_DEVICES='.length).split(',').filter((u) => uuids.includes(u));
    if (mine.length) out.push({ pid, mine });
  }
  return out;
}
if (query === '--query-gpu=name,memory.total') {
  for (const _ of uuids) console.log(name + ', 81559');
} else if (query.startsWith('--query-gpu=index,uuid,')) {
  const used = new Set(users().flatMap((u) => u.mine));
  uuids.forEach((uuid, i) => {
    const util = used.has(uuid) ? busy : 0;
    const power = used.has(uuid) ? '612.50' : '70.10';
    console.log([i, uuid, name, util, used.has(uuid) ? 60 : 0, used.has(uuid) ? 40960 : 1, 81559, power, '700.00', 40, 1980, 'Disabled'].join(', '));
  });
} else if (query.startsWith('--query-compute-apps=')) {
  for (const u of users()) for (const uuid of u.mine) console.log(u.pid + ', ' + uuid + ', 40960');
} else {
  console.error('fake nvidia-smi: unsupported arguments ' + args.join(' '));
  process.exit(2);
}
`;
  const file = join(binDir, 'nvidia-smi');
  writeFileSync(file, script);
  chmodSync(file, 0o755);
  return { binDir, uuids, name };
}

/** A GPU as its driver's files show it (what the sandbox reads to find its device file). */
export type FakeDriverGpu =
  | { vendor: 'nvidia'; uuid: string; minor: number; bus: string }
  | { vendor: 'amd'; uniqueId: string; renderNode: string; bus: string };

/**
 * A fake GPU driver's files, laid out as the real drivers lay them out, under `dir`:
 * proc/driver/nvidia/gpus/<bus>/information ("GPU UUID", "Device Minor"), sys/class/drm/<renderD*>/
 * device/unique_id, and dev/ with nvidia<minor>, nvidiactl, nvidia-uvm, kfd and dri/renderD<n>.
 * The device "files" are plain files holding their own name, so a test can tell which it opened.
 * Returns the roots to give the agent in place of /proc, /sys and /dev.
 */
export function writeFakeGpuDriver(
  dir: string,
  gpus: readonly FakeDriverGpu[],
): { proc: string; sys: string; dev: string } {
  const roots = { proc: join(dir, 'proc'), sys: join(dir, 'sys'), dev: join(dir, 'dev') };
  const device = (name: string) => {
    mkdirSync(join(roots.dev, name, '..'), { recursive: true });
    writeFileSync(join(roots.dev, name), `${name}\n`);
  };
  for (const gpu of gpus) {
    if (gpu.vendor === 'nvidia') {
      const entry = join(roots.proc, 'driver', 'nvidia', 'gpus', gpu.bus);
      mkdirSync(entry, { recursive: true });
      writeFileSync(
        join(entry, 'information'),
        [
          'Model: \t\t NVIDIA H100 80GB HBM3',
          'IRQ:   \t\t 180',
          `GPU UUID: \t ${gpu.uuid}`,
          'Video BIOS: \t 96.00.99.00.01',
          'Bus Type: \t PCIe',
          'DMA Size: \t 52 bits',
          'DMA Mask: \t 0xfffffffffffff',
          `Bus Location: \t ${gpu.bus}`,
          `Device Minor: \t ${gpu.minor}`,
          'GPU Excluded:\t No',
          '',
        ].join('\n'),
      );
      device(`nvidia${gpu.minor}`);
      for (const shared of ['nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools']) device(shared);
    } else {
      const node = join(roots.sys, 'class', 'drm', gpu.renderNode, 'device');
      mkdirSync(node, { recursive: true });
      writeFileSync(join(node, 'unique_id'), `${gpu.uniqueId}\n`);
      device(join('dri', gpu.renderNode));
      device('kfd');
    }
  }
  mkdirSync(roots.proc, { recursive: true });
  mkdirSync(roots.sys, { recursive: true });
  mkdirSync(roots.dev, { recursive: true });
  return roots;
}
