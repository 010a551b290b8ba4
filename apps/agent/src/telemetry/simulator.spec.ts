import { describe, expect, it } from '@jest/globals';
import { AgentTelemetry, buildAgentTelemetry, decode, encode } from '@hearth/contracts';
import { FleetSimulator, runFleet } from './simulator.js';

const tenantId = '0190f3a4-5b6c-7d8e-9f00-000000000001';
const agents = Array.from({ length: 20 }, (_, i) => ({
  tenantId,
  agentId: `0190f3a4-5b6c-7d8e-9f00-${(i + 1).toString().padStart(12, '0')}`,
  gpus: 8,
  jobs: [`0190f3a4-5b6c-7d8e-9f00-${(1000 + i).toString().padStart(12, '0')}`],
}));

describe('FleetSimulator', () => {
  it('produces messages the contract accepts, for every agent, over simulated hours', () => {
    const sim = new FleetSimulator({ agents, intervalSeconds: 5, seed: 7 });
    const start = Date.UTC(2026, 10, 21, 10);
    let busy = 0;
    let held = 0;
    let n = 0;
    for (let t = 0; t < 2 * 3600; t += 5)
      for (let i = 0; i < agents.length; i++) {
        const message = sim.message(i, start + t * 1000);
        // Every 25th through the contract both ways (all of them would make this test slow).
        if (n++ % 25 === 0) expect(decode(AgentTelemetry, encode(AgentTelemetry, message)).ok).toBe(true);
        for (const [, util, , , , , , job] of message.samples[0].gpus) {
          if (util !== null && util > 50) busy++;
          if (job !== null) held++;
        }
      }
    const readings = (2 * 3600 * agents.length * 8) / 5;
    // A lively fleet: a good share of its GPUs busy, and held by jobs, but not all of them.
    expect(busy / readings).toBeGreaterThan(0.2);
    expect(busy / readings).toBeLessThan(0.95);
    expect(held / readings).toBeGreaterThan(busy / readings);
  });

  it('builds the same message the contract’s builder would', () => {
    const a = new FleetSimulator({ agents, intervalSeconds: 5, seed: 9 });
    const b = new FleetSimulator({ agents, intervalSeconds: 5, seed: 9 });
    for (let t = 0; t < 600; t += 5) {
      const at = Date.UTC(2026, 10, 21, 10) + t * 1000;
      expect(a.message(2, at)).toEqual(buildAgentTelemetry(agents[2].agentId, [b.sample(2, at)], 0, 5));
    }
  });

  it('is deterministic for a seed', () => {
    const a = new FleetSimulator({ agents, intervalSeconds: 5, seed: 3 });
    const b = new FleetSimulator({ agents, intervalSeconds: 5, seed: 3 });
    expect(a.message(4, 1_800_000_000_000)).toEqual(b.message(4, 1_800_000_000_000));
  });

  it('sends every agent once per interval, each at its own phase', async () => {
    const sim = new FleetSimulator({ agents, intervalSeconds: 1, seed: 1 });
    const sent = new Map<string, number>();
    const stop = new AbortController();
    const run = runFleet(
      sim,
      (agent) => {
        sent.set(agent.agentId, (sent.get(agent.agentId) ?? 0) + 1);
        return Promise.resolve();
      },
      stop.signal,
      { tickMs: 5 },
    );
    await new Promise((r) => setTimeout(r, 2500));
    stop.abort();
    const stats = await run;
    expect([...sent.keys()].sort()).toEqual(agents.map((a) => a.agentId).sort());
    for (const n of sent.values()) expect(n === 2 || n === 3).toBe(true);
    expect(stats.failed).toBe(0);
  });
});
