/**
 * The device files of a job's GPUs, for the sandbox: a sandboxed command job gets a minimal /dev
 * with only these added, so the GPUs it was not given cannot be opened at all, whatever its
 * environment says (CUDA_VISIBLE_DEVICES is only a convention a program may ignore).
 *
 * - NVIDIA: /dev/nvidia<minor> of each of its GPUs, plus the driver's shared files (nvidiactl,
 *   nvidia-uvm, nvidia-uvm-tools, nvidia-modeset, nvidia-caps/ for MIG), as nvidia-container-toolkit
 *   gives a container. A GPU's minor number is read from the driver's own
 *   /proc/driver/nvidia/gpus/<PCI address>/information ("GPU UUID", "Device Minor"), matched by the
 *   uuid nvidia-smi reported: the minor is not nvidia-smi's index on every host. The other GPUs'
 *   entries there are hidden too, so NVML inside lists only the job's.
 * - AMD: /dev/kfd (shared) plus /dev/dri/renderD<n> of each of its GPUs, AMD's documented way to
 *   restrict a container to some GPUs. The render node is the one whose PCI device's `unique_id` in
 *   sysfs is the uuid rocm-smi reported ("Unique ID").
 *
 * A GPU whose device file cannot be found fails the job with the reason: it is never run with more
 * devices than it was given. Inside, the job's GPUs are the only ones, numbered from 0.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { GpuDevice } from '../telemetry/gpu-allocator.js';

/** Where the host's driver files are; tests point these at a fake driver's tree. */
export interface DeviceRoots {
  proc: string;
  sys: string;
  dev: string;
}

export const HOST_DEVICE_ROOTS: DeviceRoots = Object.freeze({ proc: '/proc', sys: '/sys', dev: '/dev' });

export interface GpuDeviceFiles {
  /** Host device files (or directories) to bind, each at /dev/<its path under roots.dev>. */
  bind: { from: string; to: string }[];
  /** The other GPUs' driver entries, to be emptied in the sandbox. */
  hide: string[];
}

/** A GPU of the job whose device file this host does not show; the job fails with the message. */
export class GpuDeviceError extends Error {
  override readonly name = 'GpuDeviceError';
}

const NVIDIA_SHARED = ['nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools', 'nvidia-modeset', 'nvidia-caps'];
const AMD_SHARED = ['kfd'];

export function gpuDeviceFiles(
  gpus: readonly GpuDevice[],
  roots: DeviceRoots = HOST_DEVICE_ROOTS,
): GpuDeviceFiles {
  const files: GpuDeviceFiles = { bind: [], hide: [] };
  const nvidia = gpus.filter((g) => g.vendor === 'nvidia');
  const amd = gpus.filter((g) => g.vendor === 'amd');
  if (nvidia.length > 0) addNvidia(nvidia, roots, files);
  if (amd.length > 0) addAmd(amd, roots, files);
  return files;
}

function addNvidia(gpus: readonly GpuDevice[], roots: DeviceRoots, files: GpuDeviceFiles): void {
  const entriesDir = path.join(roots.proc, 'driver', 'nvidia', 'gpus');
  const entries = listDir(entriesDir).map((bus) => {
    const info = readText(path.join(entriesDir, bus, 'information')) ?? '';
    return {
      dir: path.join(entriesDir, bus),
      uuid: field(info, 'GPU UUID'),
      minor: field(info, 'Device Minor'),
    };
  });
  const mine = new Set<string>();
  for (const gpu of gpus) {
    const entry = entries.find((e) => sameId(e.uuid, gpu.uuid));
    if (!entry || entry.minor === null || !/^\d{1,3}$/.test(entry.minor)) {
      throw new GpuDeviceError(
        `cannot find the device file of NVIDIA GPU ${gpu.uuid ?? `#${gpu.index} (nvidia-smi gave no uuid)`}: ` +
          `no entry under ${entriesDir} names it with its minor number`,
      );
    }
    mine.add(entry.dir);
    files.bind.push(device(roots, `nvidia${Number(entry.minor)}`, gpu));
  }
  files.bind.push(...shared(roots, NVIDIA_SHARED));
  files.hide.push(...entries.filter((e) => !mine.has(e.dir)).map((e) => e.dir));
}

function addAmd(gpus: readonly GpuDevice[], roots: DeviceRoots, files: GpuDeviceFiles): void {
  const drm = path.join(roots.sys, 'class', 'drm');
  const renderNodes = listDir(drm)
    .filter((name) => /^renderD\d+$/.test(name))
    .map((name) => ({
      name,
      uniqueId: readText(path.join(drm, name, 'device', 'unique_id'))?.trim() ?? null,
    }));
  for (const gpu of gpus) {
    const node = renderNodes.find((n) => sameId(n.uniqueId, gpu.uuid));
    if (!node) {
      throw new GpuDeviceError(
        `cannot find the render node of AMD GPU ${gpu.uuid ?? `#${gpu.index} (rocm-smi gave no unique id)`}: ` +
          `no ${drm}/renderD*/device/unique_id names it`,
      );
    }
    files.bind.push(device(roots, path.join('dri', node.name), gpu));
  }
  files.bind.push(...shared(roots, AMD_SHARED));
}

function device(roots: DeviceRoots, name: string, gpu: GpuDevice): { from: string; to: string } {
  const from = path.join(roots.dev, name);
  if (!fs.existsSync(from)) {
    throw new GpuDeviceError(
      `the device file of ${gpu.vendor.toUpperCase()} GPU ${gpu.uuid ?? gpu.index} (${from}) is missing`,
    );
  }
  return { from, to: path.join('/dev', name) };
}

/** The driver's files every job with a GPU of the vendor needs, those the host has. */
function shared(roots: DeviceRoots, names: readonly string[]): { from: string; to: string }[] {
  return names
    .map((name) => ({ from: path.join(roots.dev, name), to: path.join('/dev', name) }))
    .filter((f) => fs.existsSync(f.from));
}

/** `Key: value` from a driver information file (tabs and spaces around the colon). */
function field(text: string, key: string): string | null {
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && line.slice(0, colon).trim() === key) return line.slice(colon + 1).trim() || null;
  }
  return null;
}

/** Uuids as the tools print them: case aside, and with or without rocm-smi's 0x; none matches none. */
function sameId(a: string | null, b: string | null): boolean {
  const norm = (s: string) => s.trim().toLowerCase().replace(/^0x/, '');
  return a !== null && b !== null && norm(a) !== '' && norm(a) === norm(b);
}

function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}
