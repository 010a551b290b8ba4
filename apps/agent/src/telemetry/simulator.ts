/**
 * Many virtual agents in one process, each sending what a real agent sends: one AgentTelemetry message
 * per sample interval, to its own subject, with realistic streams. For load tests (bench/telemetry)
 * and a lively demo fleet.
 *
 * Each virtual host has N GPUs of one model. Jobs come and go: a job takes 1, 2, 4 or all of the free
 * GPUs for a while and then lets them go. While it holds them it trains (utilisation in the 90s with a
 * dip every few minutes for evaluation and checkpoints), serves (bursty, 20–60 %), or sits on them
 * idle (the held-but-unused GPUs idle detection is for). Power follows utilisation between idle and
 * the GPU's limit, memory fills when a job starts, temperature follows power. Deterministic for a seed.
 */
import type { AgentAddress, AgentTelemetry, TelemetryGpuSample, TelemetrySample } from '@hearth/contracts';
import { buildAgentTelemetry } from '@hearth/contracts';

export interface VirtualAgent extends AgentAddress {
  gpus: number;
  /** Job ids this agent may attribute GPUs to (jobs the control plane dispatched to it); none: null. */
  jobs?: readonly string[];
}

export interface SimulatorOptions {
  agents: readonly VirtualAgent[];
  intervalSeconds: number;
  seed?: number;
  model?: { name: string; memoryMiB: number; powerLimitW: number; idleW: number };
}

type Workload = 'train' | 'serve' | 'idle';

interface SimJob {
  id: string | null;
  gpus: number[];
  workload: Workload;
  startedAt: number;
  endsAt: number;
}

interface Host {
  agent: VirtualAgent;
  jobs: SimJob[];
  nextJob: number;
  temperature: number[];
  /** Offset of its samples within the interval, so the fleet does not send in step. */
  phaseMs: number;
  cpuTicks: number;
  /** The GPUs as a message lists them (they do not change). */
  table?: AgentTelemetry['gpus'];
}

const H100 = { name: 'NVIDIA H100 80GB HBM3', memoryMiB: 81559, powerLimitW: 700, idleW: 70 };
const MINUTE = 60_000;

/** mulberry32: small, fast, good enough for synthetic load. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class FleetSimulator {
  private readonly random: () => number;
  private readonly hosts: Host[];
  private readonly model: NonNullable<SimulatorOptions['model']>;

  constructor(private readonly options: SimulatorOptions) {
    this.random = prng(options.seed ?? 1);
    this.model = options.model ?? H100;
    const period = options.intervalSeconds * 1000;
    this.hosts = options.agents.map((agent) => ({
      agent,
      jobs: [],
      nextJob: 0,
      temperature: Array.from({ length: agent.gpus }, () => 30 + this.random() * 5),
      phaseMs: this.random() * period,
      cpuTicks: 0,
    }));
  }

  get agents(): readonly VirtualAgent[] {
    return this.options.agents;
  }

  get intervalSeconds(): number {
    return this.options.intervalSeconds;
  }

  /** When agent `i` samples in the interval starting at `start` (ms). */
  dueAt(i: number, start: number): number {
    return start + this.hosts[i].phaseMs;
  }

  /** Agent `i`'s sample at time `at` (ms), advancing its jobs. */
  sample(i: number, at: number): TelemetrySample {
    const host = this.hosts[i];
    this.schedule(host, at);
    const owner = new Map<number, SimJob>();
    for (const job of host.jobs) for (const g of job.gpus) owner.set(g, job);
    const gpus = Array.from({ length: host.agent.gpus }, (_, g) => this.gpu(host, g, owner.get(g), at));
    const busy = gpus.reduce((a, g) => a + (g.utilizationPct ?? 0), 0) / Math.max(1, gpus.length);
    return {
      at: new Date(at).toISOString(),
      cpuPct: round(Math.min(100, 3 + busy * 0.3 + this.random() * 4), 1),
      memory: { usedMiB: Math.round(64_000 + busy * 4000 + this.random() * 1000), totalMiB: 2_063_720 },
      disk: {
        readBps: Math.round(busy * 2e6 * this.random()),
        writeBps: Math.round(busy * 5e5 * this.random()),
      },
      net: { rxBps: Math.round(busy * 1e7 * this.random()), txBps: Math.round(busy * 2e6 * this.random()) },
      gpus,
      jobs: host.jobs
        .filter((j) => j.id !== null)
        .map((j) => ({
          jobId: j.id!,
          cpuPct: round(Math.min(100, 2 + j.gpus.length * this.random() * 3), 1),
        })),
      issues: { skippedLines: 0, rejectedValues: 0, failedTools: [] },
    };
  }

  /**
   * The wire message for agent `i` at time `at`: what buildAgentTelemetry makes of the sample, built
   * straight from it with the host's GPU table made once (the load generator must stay cheap).
   */
  message(i: number, at: number): AgentTelemetry {
    const host = this.hosts[i];
    const sample = this.sample(i, at);
    host.table ??= buildAgentTelemetry(host.agent.agentId, [sample], 0).gpus;
    const jobs: string[] = [];
    const ref = (id: string) => {
      const k = jobs.indexOf(id);
      return k >= 0 ? k : jobs.push(id) - 1;
    };
    const { gpus, jobs: running, issues: _issues, ...host_ } = sample;
    return {
      type: 'agent.telemetry',
      v: 1,
      agentId: host.agent.agentId,
      intervalSeconds: this.options.intervalSeconds,
      dropped: 0,
      gpus: host.table,
      jobs,
      samples: [
        {
          ...host_,
          gpus: gpus.map((g, k) => [
            k,
            g.utilizationPct,
            g.memoryUtilizationPct,
            g.memoryUsedMiB,
            g.powerW,
            g.temperatureC,
            g.smClockMHz,
            g.jobId === null ? null : ref(g.jobId),
            g.foreignProcesses,
          ]),
          jobs: running.map((j) => [ref(j.jobId), j.cpuPct]),
        },
      ],
    };
  }

  private schedule(host: Host, at: number): void {
    host.jobs = host.jobs.filter((j) => j.endsAt > at);
    const taken = new Set(host.jobs.flatMap((j) => j.gpus));
    const free = Array.from({ length: host.agent.gpus }, (_, g) => g).filter((g) => !taken.has(g));
    // A free GPU gets work now and then: on average a few minutes after it is let go.
    if (free.length === 0 || this.random() > 0.02 * this.options.intervalSeconds) return;
    const sizes = [1, 2, 4, free.length].filter((n) => n <= free.length);
    const size = sizes[Math.floor(this.random() * sizes.length)];
    const roll = this.random();
    const workload: Workload = roll < 0.65 ? 'train' : roll < 0.9 ? 'serve' : 'idle';
    const pool = host.agent.jobs ?? [];
    host.jobs.push({
      id: pool.length ? pool[host.nextJob++ % pool.length] : null,
      gpus: free.slice(0, size),
      workload,
      startedAt: at,
      endsAt: at + (10 + this.random() * 50) * MINUTE,
    });
  }

  private gpu(host: Host, g: number, job: SimJob | undefined, at: number): TelemetryGpuSample {
    const m = this.model;
    let util = 0;
    let memory = 1;
    if (job) {
      const minutes = (at - job.startedAt) / MINUTE;
      memory = Math.min(m.memoryMiB * 0.95, m.memoryMiB * (0.2 + minutes * 0.4));
      if (job.workload === 'train')
        util = minutes % 7 < 0.5 ? 8 + this.random() * 10 : 90 + this.random() * 9.5;
      else if (job.workload === 'serve') util = 20 + this.random() * 40;
      else util = this.random() * 2;
    }
    const power = m.idleW + (m.powerLimitW - m.idleW) * (util / 100) * (0.85 + this.random() * 0.15);
    const temperature = (host.temperature[g] += (30 + power / 12 - host.temperature[g]) * 0.3);
    return {
      vendor: 'nvidia',
      index: g,
      uuid: `GPU-${host.agent.agentId.slice(0, 8)}-${host.agent.agentId.slice(-12)}-${g.toString().padStart(4, '0')}`,
      name: m.name,
      memoryTotalMiB: m.memoryMiB,
      powerLimitW: m.powerLimitW,
      mig: false,
      utilizationPct: round(util, 1),
      memoryUtilizationPct: round(util * 0.6, 1),
      memoryUsedMiB: Math.round(memory),
      powerW: round(power, 1),
      temperatureC: round(temperature, 1),
      smClockMHz: util > 1 ? 1980 : 345,
      jobId: job?.id ?? null,
      foreignProcesses: 0,
    };
  }
}

function round(value: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(value * f) / f;
}

export interface FleetRunStats {
  sent: number;
  failed: number;
  /** Publishes waiting for their ack now. */
  inFlight: number;
}

/**
 * Sends every agent's sample once per interval, each at its own phase, until the signal aborts. A
 * publish is not awaited before the next (a fleet does not wait for one agent), but no more than
 * maxInFlight wait at once. Failures are counted (a real agent would buffer and retry).
 */
export async function runFleet(
  sim: FleetSimulator,
  publish: (agent: VirtualAgent, message: AgentTelemetry) => Promise<unknown>,
  signal: AbortSignal,
  options: { maxInFlight?: number; tickMs?: number; onError?: (err: unknown) => void } = {},
): Promise<FleetRunStats> {
  const stats: FleetRunStats = { sent: 0, failed: 0, inFlight: 0 };
  const maxInFlight = options.maxInFlight ?? 10_000;
  const period = sim.intervalSeconds * 1000;
  const order = sim.agents.map((_, i) => i).sort((a, b) => sim.dueAt(a, 0) - sim.dueAt(b, 0));
  let start = Date.now();
  let next = 0;
  while (!signal.aborted) {
    const now = Date.now();
    while (next < order.length && sim.dueAt(order[next], start) <= now && stats.inFlight < maxInFlight) {
      const i = order[next++];
      const at = sim.dueAt(i, start);
      stats.inFlight++;
      publish(sim.agents[i], sim.message(i, at))
        .then(() => stats.sent++)
        .catch((err: unknown) => {
          stats.failed++;
          options.onError?.(err);
        })
        .finally(() => stats.inFlight--);
    }
    if (next >= order.length) {
      start += period;
      next = 0;
    }
    await new Promise((r) => setTimeout(r, options.tickMs ?? 10));
  }
  return stats;
}
