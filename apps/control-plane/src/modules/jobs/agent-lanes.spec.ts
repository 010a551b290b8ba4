import { describe, expect, it } from '@jest/globals';
import type { JsMsg } from '@nats-io/jetstream';
import { pino } from 'pino';
import { AgentLanes, type UpMessage } from './agent-lanes.js';

const X = {
  tenantId: '0190f3a4-5b6c-7d8e-9f00-000000000001',
  agentId: '0190f3a4-5b6c-7d8e-9f00-0000000000aa',
};
const Y = {
  tenantId: '0190f3a4-5b6c-7d8e-9f00-000000000002',
  agentId: '0190f3a4-5b6c-7d8e-9f00-0000000000bb',
};

function setup(
  read: (seq: number) => Promise<{ subject: string; data: Uint8Array } | null> = async (seq) => ({
    subject: `s.${seq}`,
    data: new Uint8Array([seq % 256]),
  }),
) {
  const handled: { seq: number; agent: string }[] = [];
  const replies: { subject: string; payload: string }[] = [];
  const naks: { seq: number; delay?: number }[] = [];
  const lanes = new AgentLanes(
    async (msg: UpMessage, a) => {
      handled.push({ seq: msg.seq, agent: a.agentId });
      await new Promise((r) => setTimeout(r, 1));
      msg.ack();
    },
    { read, reply: (subject, payload) => void replies.push({ subject, payload }) },
    pino({ level: 'silent' }),
  );
  const msg = (seq: number, deliveryCount = 1) =>
    ({
      seq,
      subject: 'x',
      data: new Uint8Array(),
      reply: `$JS.ACK.HEARTH_UP.cp.${deliveryCount}.${seq}.${seq}.0.0`,
      info: { deliveryCount },
      ack: () => replies.push({ subject: `direct.${seq}`, payload: '+ACK' }),
      nak: (delay?: number) => naks.push({ seq, delay }),
      term: () => {},
    }) as unknown as JsMsg;
  return { lanes, handled, replies, naks, msg };
}

const settle = async (done: () => boolean) => {
  for (let i = 0; i < 2000 && !done(); i++) await new Promise((r) => setTimeout(r, 5));
};

describe('AgentLanes', () => {
  it('runs an agent over its share in stream order, set-aside events read back and acked', async () => {
    const { lanes, handled, replies, naks, msg } = setup();
    for (let seq = 1; seq <= 600; seq++) lanes.offer(msg(seq), X);
    expect(naks.length).toBe(600 - 256);
    expect(naks.every((n) => n.delay === 5 * 60_000)).toBe(true);
    // Done means acked: each handler acks a moment after it is called.
    await settle(() => replies.filter((r) => r.payload === '+ACK').length === 600);
    expect(handled.map((h) => h.seq)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
    expect(replies.filter((r) => r.payload === '+ACK')).toHaveLength(600);
  });

  it("lets another agent's event through at once behind a backlog", async () => {
    const { lanes, handled, msg } = setup();
    for (let seq = 1; seq <= 5000; seq++) lanes.offer(msg(seq), X);
    lanes.offer(msg(5001), Y);
    await settle(() => handled.some((h) => h.agent === Y.agentId));
    expect(handled.findIndex((h) => h.agent === Y.agentId)).toBeLessThan(16);
  });

  it('keeps the place of a set-aside event handed back early, and takes one handed back too often', async () => {
    const { lanes, handled, naks, msg } = setup();
    for (let seq = 1; seq <= 300; seq++) lanes.offer(msg(seq), X);
    lanes.offer(msg(280, 2), X); // its 5 minutes ran out
    expect(naks.filter((n) => n.seq === 280)).toHaveLength(2);
    lanes.offer(msg(290, 9), X); // 8 times: taken now
    await settle(() => handled.length === 300);
    const order = handled.map((h) => h.seq);
    expect(order.indexOf(290)).toBeLessThan(order.indexOf(257));
    expect(order.filter((s) => s !== 290)).toEqual(
      Array.from({ length: 300 }, (_, i) => i + 1).filter((s) => s !== 290),
    );
  });

  it('skips what is gone from the stream, and retries what could not be read', async () => {
    let fail = true;
    const { lanes, handled, msg } = setup(async (seq) => {
      if (seq === 270) return null;
      if (seq === 280 && fail) {
        fail = false;
        throw new Error('TIMEOUT');
      }
      return { subject: 's', data: new Uint8Array() };
    });
    for (let seq = 1; seq <= 300; seq++) lanes.offer(msg(seq), X);
    await settle(() => handled.length === 299);
    expect(handled.map((h) => h.seq)).toEqual(
      Array.from({ length: 300 }, (_, i) => i + 1).filter((s) => s !== 270),
    );
  });
});
