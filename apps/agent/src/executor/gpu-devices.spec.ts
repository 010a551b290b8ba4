import { afterAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFakeGpuDriver } from '@hearth/testing';
import type { GpuDevice } from '../telemetry/gpu-allocator.js';
import { GpuDeviceError, gpuDeviceFiles } from './gpu-devices.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-gpu-devices-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const U0 = 'GPU-5f3c2a1b-0000-4000-8000-000000000000';
const U1 = 'GPU-5f3c2a1b-0000-4000-8000-000000000001';
const U2 = 'GPU-5f3c2a1b-0000-4000-8000-000000000002';
const nvidia = (index: number, uuid: string | null): GpuDevice => ({ vendor: 'nvidia', index, uuid });
const amd = (index: number, uuid: string | null): GpuDevice => ({ vendor: 'amd', index, uuid });

// Minor numbers deliberately not in nvidia-smi's index order: the device file follows the uuid.
const driver = writeFakeGpuDriver(path.join(root, 'host'), [
  { vendor: 'nvidia', uuid: U0, minor: 2, bus: '0000:18:00.0' },
  { vendor: 'nvidia', uuid: U1, minor: 0, bus: '0000:2a:00.0' },
  { vendor: 'nvidia', uuid: U2, minor: 1, bus: '0000:3a:00.0' },
  { vendor: 'amd', uniqueId: '4e2f5a1cd8b3c0a1', renderNode: 'renderD129', bus: '0000:c1:00.0' },
  { vendor: 'amd', uniqueId: '9a6b3c2d1e0f4a57', renderNode: 'renderD128', bus: '0000:c2:00.0' },
]);
const dev = (name: string) => ({ from: path.join(driver.dev, name), to: `/dev/${name}` });
const entry = (bus: string) => path.join(driver.proc, 'driver', 'nvidia', 'gpus', bus);

describe('gpuDeviceFiles', () => {
  it("gives an NVIDIA job its GPUs' device files by uuid, the driver's shared files, and hides the others", () => {
    expect(gpuDeviceFiles([nvidia(0, U0), nvidia(2, U2)], driver)).toEqual({
      bind: [dev('nvidia2'), dev('nvidia1'), dev('nvidiactl'), dev('nvidia-uvm'), dev('nvidia-uvm-tools')],
      hide: [entry('0000:2a:00.0')],
    });
  });

  it('gives an AMD job its render nodes, found by the unique id rocm-smi printed, and /dev/kfd', () => {
    expect(gpuDeviceFiles([amd(1, '0x9A6B3C2D1E0F4A57')], driver)).toEqual({
      bind: [dev('dri/renderD128'), dev('kfd')],
      hide: [],
    });
  });

  it('gives a job with no GPU nothing', () => {
    expect(gpuDeviceFiles([], driver)).toEqual({ bind: [], hide: [] });
  });

  it('refuses a GPU whose device file it cannot find, rather than run the job with others', () => {
    const unknown = 'GPU-00000000-0000-4000-8000-0000000000ff';
    expect(() => gpuDeviceFiles([nvidia(0, unknown)], driver)).toThrow(
      new GpuDeviceError(
        `cannot find the device file of NVIDIA GPU ${unknown}: no entry under ` +
          `${path.join(driver.proc, 'driver/nvidia/gpus')} names it with its minor number`,
      ),
    );
    expect(() => gpuDeviceFiles([nvidia(3, null)], driver)).toThrow(
      'cannot find the device file of NVIDIA GPU #3 (nvidia-smi gave no uuid)',
    );
    expect(() => gpuDeviceFiles([amd(0, null)], driver)).toThrow(
      'cannot find the render node of AMD GPU #0 (rocm-smi gave no unique id)',
    );
    // No NVIDIA driver at all (a host without one, or a container without /proc/driver/nvidia).
    const bare = writeFakeGpuDriver(path.join(root, 'bare'), []);
    expect(() => gpuDeviceFiles([nvidia(0, U0)], bare)).toThrow(GpuDeviceError);
  });

  it('refuses a GPU whose driver entry names a device file that is missing', () => {
    const partial = writeFakeGpuDriver(path.join(root, 'partial'), [
      { vendor: 'nvidia', uuid: U0, minor: 4, bus: '0000:18:00.0' },
    ]);
    fs.rmSync(path.join(partial.dev, 'nvidia4'));
    expect(() => gpuDeviceFiles([nvidia(0, U0)], partial)).toThrow(
      `the device file of NVIDIA GPU ${U0} (${path.join(partial.dev, 'nvidia4')}) is missing`,
    );
  });
});
