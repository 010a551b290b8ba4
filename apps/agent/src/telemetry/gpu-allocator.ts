/**
 * Which job may use which GPU. A job asks for a number of GPUs (of one vendor, or of whichever has
 * enough free); it gets whole GPUs no other job holds, or a refusal: never a shared one. Asking
 * again for the same job gives the same answer. The job's environment then shows it only its GPUs:
 * CUDA_VISIBLE_DEVICES for NVIDIA, HIP_VISIBLE_DEVICES for AMD, and "-1" (none) for a vendor it
 * holds none of, so a job that asked for no GPU sees none.
 */
import type { GpuVendorName } from '@hearth/contracts';

export interface GpuDevice {
  vendor: GpuVendorName;
  /** nvidia-smi's index (PCI bus order) or rocm-smi's card number. */
  index: number;
  uuid: string | null;
}

export type GpuAssignment = { ok: true; gpus: GpuDevice[] } | { ok: false; reason: string };

export interface GpuAllocatorOptions {
  /**
   * How CUDA_VISIBLE_DEVICES names GPUs. Uuids (the default) are the same whatever order CUDA
   * enumerates in; indices come with CUDA_DEVICE_ORDER=PCI_BUS_ID so they match nvidia-smi's.
   */
  cudaDevicesBy?: 'uuid' | 'index';
}

/** The largest count a job may ask for. */
export const MAX_GPUS_PER_JOB = 64;
/** An index no device has: CUDA and HIP then enumerate none. */
const NO_DEVICES = '-1';
const VENDORS: readonly GpuVendorName[] = ['nvidia', 'amd'];

export class GpuAllocator {
  private devices: GpuDevice[] = [];
  private readonly held = new Map<string, GpuDevice[]>();

  constructor(
    devices: readonly GpuDevice[] = [],
    private readonly options: GpuAllocatorOptions = {},
  ) {
    this.setDevices(devices);
  }

  /**
   * The GPUs the host has now (from detection or telemetry). A GPU that vanished stays held by its
   * job until released; one that appears can be assigned at once.
   */
  setDevices(devices: readonly GpuDevice[]): void {
    this.devices = [...devices].sort((a, b) => a.vendor.localeCompare(b.vendor) || a.index - b.index);
  }

  assign(jobId: string, count: number, vendor?: GpuVendorName): GpuAssignment {
    if (!Number.isInteger(count) || count < 0 || count > MAX_GPUS_PER_JOB) {
      return { ok: false, reason: `a job may ask for 0 to ${MAX_GPUS_PER_JOB} GPUs, not ${count}` };
    }
    const held = this.held.get(jobId);
    if (held) {
      const same = held.length === count && (vendor === undefined || held.every((d) => d.vendor === vendor));
      return same
        ? { ok: true, gpus: [...held] }
        : { ok: false, reason: `job ${jobId} already holds ${describe(held.length, held[0]?.vendor)}` };
    }
    const candidates = vendor ? [vendor] : VENDORS;
    for (const v of candidates) {
      const free = this.free(v);
      if (free.length >= count) {
        const gpus = free.slice(0, count);
        this.held.set(jobId, gpus);
        return { ok: true, gpus: [...gpus] };
      }
    }
    const available = candidates.map((v) => describe(this.free(v).length, v)).join(' or ');
    return {
      ok: false,
      reason: `not enough free GPUs: asked for ${describe(count, vendor)}, ${available} free`,
    };
  }

  /** Gives a job's GPUs back; true when it held any assignment. */
  release(jobId: string): boolean {
    return this.held.delete(jobId);
  }

  /**
   * The environment a job runs with: its GPUs, and no others. `isolated`: the job sees only its
   * own GPUs' device files (the sandbox, gpu-devices.ts), where they are numbered from 0.
   */
  envFor(jobId: string, options: { isolated?: boolean } = {}): Record<string, string> {
    const gpus = this.held.get(jobId) ?? [];
    const nvidia = gpus.filter((d) => d.vendor === 'nvidia');
    const amd = gpus.filter((d) => d.vendor === 'amd');
    const byUuid = this.options.cudaDevicesBy !== 'index' && nvidia.every((d) => d.uuid !== null);
    const index = (d: GpuDevice, i: number) => String(options.isolated ? i : d.index);
    const env: Record<string, string> = {
      CUDA_VISIBLE_DEVICES: list(nvidia.map((d, i) => (byUuid ? (d.uuid as string) : index(d, i)))),
      HIP_VISIBLE_DEVICES: list(amd.map(index)),
    };
    if (!byUuid && nvidia.length > 0) env.CUDA_DEVICE_ORDER = 'PCI_BUS_ID';
    return env;
  }

  /** The job holding a GPU, or null. */
  ownerOf(gpu: GpuDevice): string | null {
    const key = deviceKey(gpu);
    for (const [jobId, gpus] of this.held) if (gpus.some((d) => deviceKey(d) === key)) return jobId;
    return null;
  }

  /** Every GPU the host has (as last set), whoever holds it. */
  all(): GpuDevice[] {
    return [...this.devices];
  }

  /** The host's GPUs no job holds, lowest index first. */
  free(vendor?: GpuVendorName): GpuDevice[] {
    const taken = new Set([...this.held.values()].flat().map(deviceKey));
    return this.devices.filter(
      (d) => (vendor === undefined || d.vendor === vendor) && !taken.has(deviceKey(d)),
    );
  }
}

/** A GPU's identity: its uuid where the tool gives one (indices can change across reboots). */
function deviceKey(d: GpuDevice): string {
  return d.uuid !== null ? `${d.vendor}/${d.uuid}` : `${d.vendor}#${d.index}`;
}

function list(values: readonly string[]): string {
  return values.length > 0 ? values.join(',') : NO_DEVICES;
}

function describe(count: number, vendor: GpuVendorName | undefined): string {
  const kind = vendor === 'nvidia' ? 'NVIDIA ' : vendor === 'amd' ? 'AMD ' : '';
  return `${count} ${kind}GPU${count === 1 ? '' : 's'}`;
}
