import { describe, expect, it } from '@jest/globals';
import type { AgentHeartbeat } from '@hearth/contracts';
import { waitFor } from '@hearth/testing';
import { pino } from 'pino';
import type { EgressGuard } from '../egress/guard.js';
import { AgentCounters } from './counters.js';
import { runHeartbeats } from './heartbeat.js';
import { systemInfo } from './system-info.js';

describe('runHeartbeats', () => {
  it('says at once, and in every heartbeat after, that the agent is stopping', async () => {
    const sent: AgentHeartbeat[] = [];
    const guard = { heartbeat: (hb: AgentHeartbeat) => sent.push(hb) } as unknown as EgressGuard;
    const stopping = new AbortController();
    const shutdown = new AbortController();
    const loop = runHeartbeats(
      {
        agentId: '0190f3a4-5b6c-7d8e-9f00-112233445566',
        intervalSeconds: 3600, // only the stop (and shutdown) may end a wait in this test
        system: systemInfo([]),
        source: { running: () => [], freeSlots: () => (stopping.signal.aborted ? 0 : 2) },
        guard,
        counters: new AgentCounters(),
        logger: pino({ level: 'silent' }),
        stopping: stopping.signal,
      },
      shutdown.signal,
    );
    await waitFor(() => sent.length === 1, { timeoutMs: 5000, intervalMs: 10, what: 'the first heartbeat' });
    expect(sent[0]).not.toHaveProperty('stopping');
    expect(sent[0].freeSlots).toBe(2);

    stopping.abort();
    await waitFor(() => sent.length === 2, {
      timeoutMs: 5000,
      intervalMs: 10,
      what: 'the heartbeat that says the agent is stopping',
    });
    expect(sent[1]).toMatchObject({ stopping: true, freeSlots: 0 });

    shutdown.abort();
    await loop;
    expect(sent).toHaveLength(2);
  });
});
