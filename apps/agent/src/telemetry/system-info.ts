import os from 'node:os';
import type { GpuInfo, SystemInfo } from '@hearth/contracts';
import { AGENT_VERSION } from '../version.js';

/** Host facts for heartbeats and enrollment, bounded to what the contract allows. */
export function systemInfo(gpus: readonly GpuInfo[]): SystemInfo {
  return {
    hostname: os.hostname().slice(0, 255),
    os: `${os.type()} ${os.release()}`.slice(0, 64),
    arch: os.arch().slice(0, 32),
    cpus: Math.min(os.cpus().length, 65536),
    memoryBytes: os.totalmem(),
    gpus: [...gpus],
    agentVersion: AGENT_VERSION,
  };
}
