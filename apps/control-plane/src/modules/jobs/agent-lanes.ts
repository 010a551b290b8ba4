/**
 * How the control plane shares its event slots between agents (see AgentLanes), so that one
 * agent's backlog of job events does not hold up the others'.
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import type { AgentAddress } from '@hearth/contracts';
import { agentMessagesShed } from '../../platform/metrics/metrics.js';
import { UP_MAX_DEFERRALS } from '../../platform/messaging/nats.service.js';

/** Events handled at once, all agents together. */
const EVENT_CONCURRENCY = 32;
/** Per agent: events handled at once (its share of EVENT_CONCURRENCY). */
const AGENT_RUNNING = 8;
/** Per agent: events taken and not done yet; past it, its further events are set aside. */
const AGENT_TAKEN = 256;
/** All agents: events taken and not done yet; past it the loop pulls nothing until one is done. */
const MAX_TAKEN = 2048;
/**
 * How long JetStream keeps a set-aside event from every consumer (and so from other replicas).
 * One still set aside then comes back and is set aside again, in its place.
 */
const ASIDE_MS = 5 * 60_000;
/** Set-aside events read back at once, per agent. */
const READ_AHEAD = 64;

/** What handling an event needs of its message: one JetStream delivered, or one set aside and read back. */
export interface UpMessage {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  /** Times JetStream delivered it. */
  readonly deliveries: number;
  ack(): void;
  term(): void;
  nak(delayMs: number): void;
}

function delivered(msg: JsMsg): UpMessage {
  return {
    seq: msg.seq,
    subject: msg.subject,
    data: msg.data,
    deliveries: msg.info.deliveryCount,
    ack: () => msg.ack(),
    term: () => msg.term(),
    nak: (delayMs) => msg.nak(delayMs),
  };
}

/**
 * The subject a delivered message's acks go to (`$JS.ACK.…`): what answers it after the message
 * itself is gone. nats.js has it on every JetStream message, though not in JsMsg's type.
 */
function ackSubject(msg: JsMsg): string {
  const reply = (msg as unknown as { reply?: unknown }).reply;
  if (typeof reply !== 'string' || !reply.startsWith('$JS.ACK.'))
    throw new Error('a JetStream message without its ack subject');
  return reply;
}

/** What the lanes need of NATS: a stored event by its sequence (null when gone), and a reply. */
export interface LaneIo {
  read(seq: number): Promise<{ subject: string; data: Uint8Array } | null>;
  reply(subject: string, payload: string): void;
}

/** An event set aside: all that is kept of it until its turn. */
interface Aside {
  seq: number;
  /** Its last delivery's ack subject: acks, naks and terms of the event go there. */
  reply: string;
  deliveries: number;
}

/** One agent's events on this replica. */
interface Lane {
  agentId: string;
  a: AgentAddress;
  /** Taken, to run in this order. */
  waiting: UpMessage[];
  running: number;
  /** Set aside, by ascending stream sequence. */
  aside: Aside[];
  /** Being read back (no longer set aside, not yet waiting). */
  reading: number;
}

/**
 * How the replica shares its event slots between agents: one agent's backlog (a flood from a broken
 * or compromised agent, or a real agent's after an outage) must not hold up the others' events, the
 * way the single FIFO consumer did (16 ms → 6.6 s with 10,000 events ahead, in the audit).
 *
 * - Each agent has a lane. Its events run at most AGENT_RUNNING at once, and lanes with work take
 *   turns for the EVENT_CONCURRENCY slots: another agent's event waits for a few of this agent's at
 *   most, never for its backlog.
 * - An agent with AGENT_TAKEN events taken has its further events set aside: nak'd with a delay of
 *   ASIDE_MS, so that they stay in the stream (nothing is lost, not even if this replica dies) and
 *   JetStream hands them to no one meanwhile; all that is kept here is their sequence and ack
 *   subject. Setting one aside is a nak, microseconds: the events behind it in the stream (other
 *   agents') are reached at once. As the lane frees up, its set-aside events are read back from the
 *   stream by sequence, handled, and acked through their ack subjects.
 *
 * Order. A job's events must be applied in the order sent (a log batch after the attempt's end is
 * refused, and so is one older than the last applied), and an agent's events are in the stream in
 * the order it sent them. A lane runs its events in stream order: while any of its events is set
 * aside (or being read back), every further one is set aside too, in sequence order, and they are
 * read back in that order. A job's event also waits for the previous one of that job (`perJob`).
 * Nothing rests on when or in what order JetStream redelivers: a set-aside event it hands back
 * (its delay ran out before its turn) keeps its place and is set aside again. One exception, so that
 * no event is ever lost: one delivered more than UP_MAX_DEFERRALS times (40 minutes set aside: the
 * database cannot keep up) is taken at once, whatever is before it (deliveries past
 * max_deliver would make JetStream drop it). An event that fails is nak'd to come back a second
 * later, as before lanes, without holding up its lane. With several replicas, an agent's events are
 * split between them, and so is this order, as it was before lanes.
 */
export class AgentLanes {
  private readonly lanes = new Map<string, Lane>();
  /** Lanes with waiting events and a free share, in turn order. */
  private readonly ready = new Set<Lane>();
  private readonly tasks = new Set<Promise<void>>();
  private readonly wakers: (() => void)[] = [];
  /** Lanes with events set aside that wait for room in all (MAX_TAKEN) to read them back. */
  private readonly starved = new Set<Lane>();
  private running = 0;
  /** Events taken (waiting, running or being read back), all lanes together. */
  private taken = 0;
  private stopping = false;

  constructor(
    private readonly handle: (msg: UpMessage, a: AgentAddress) => Promise<void>,
    private readonly io: LaneIo,
    private readonly log: Logger,
  ) {}

  /** Resolves when another event may be taken (the loop's back-pressure). */
  async room(): Promise<void> {
    while (this.taken >= MAX_TAKEN) await new Promise<void>((wake) => this.wakers.push(wake));
  }

  /** Takes the event into its agent's lane, or sets it aside; true when taken. */
  offer(msg: JsMsg, a: AgentAddress): boolean {
    const lane = this.lane(a);
    const i = this.indexOf(lane, msg.seq);
    if (lane.aside[i]?.seq === msg.seq) {
      // Handed back before its turn: it keeps its place, with this delivery's ack subject.
      if (msg.info.deliveryCount <= UP_MAX_DEFERRALS) return this.setAside(lane, msg, a, i);
      lane.aside.splice(i, 1);
    } else if (msg.info.deliveryCount <= UP_MAX_DEFERRALS) {
      const behind = lane.aside.length > 0 || lane.reading > 0;
      if (behind || this.held(lane) >= AGENT_TAKEN) return this.setAside(lane, msg, a, i);
    }
    this.take(lane, delivered(msg));
    return true;
  }

  /** Gives back what waits or is set aside (another replica may take it at once), and lets what runs finish. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const lane of this.lanes.values()) {
      for (const msg of lane.waiting.splice(0)) msg.nak(0);
      for (const aside of lane.aside.splice(0)) this.io.reply(aside.reply, '-NAK');
    }
    this.ready.clear();
    await Promise.all(this.tasks);
  }

  private lane(a: AgentAddress): Lane {
    let lane = this.lanes.get(a.agentId);
    if (!lane) {
      lane = { agentId: a.agentId, a, waiting: [], running: 0, aside: [], reading: 0 };
      this.lanes.set(a.agentId, lane);
    }
    return lane;
  }

  private held(lane: Lane): number {
    return lane.waiting.length + lane.running + lane.reading;
  }

  /** The index of the first set-aside event at or after `seq`. */
  private indexOf(lane: Lane, seq: number): number {
    let lo = 0;
    let hi = lane.aside.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (lane.aside[mid].seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private setAside(lane: Lane, msg: JsMsg, a: AgentAddress, i: number): false {
    const aside = { seq: msg.seq, reply: ackSubject(msg), deliveries: msg.info.deliveryCount };
    if (lane.aside[i]?.seq === msg.seq) lane.aside[i] = aside;
    else {
      if (lane.aside.length === 0 && lane.reading === 0)
        this.log.warn(
          { ...a, taken: this.held(lane) },
          "agent's events set aside: its share of the event slots is full",
        );
      lane.aside.splice(i, 0, aside);
      agentMessagesShed.inc({ kind: 'event', reason: 'set aside' });
    }
    msg.nak(ASIDE_MS);
    this.readBack(lane);
    return false;
  }

  private take(lane: Lane, msg: UpMessage) {
    lane.waiting.push(msg);
    this.taken++;
    if (lane.running < AGENT_RUNNING) this.ready.add(lane);
    this.pump();
  }

  /**
   * Reads the lane's next set-aside events back from the stream, in order, once it has room for
   * them (half its share free, so that it reads in batches).
   */
  private readBack(lane: Lane) {
    if (lane.aside.length === 0) this.starved.delete(lane);
    if (this.stopping || lane.reading > 0 || lane.aside.length === 0) return;
    if (this.held(lane) > AGENT_TAKEN / 2) return;
    const room = Math.min(READ_AHEAD, AGENT_TAKEN - this.held(lane), MAX_TAKEN - this.taken);
    if (room <= 0) {
      this.starved.add(lane);
      return;
    }
    this.starved.delete(lane);
    const batch = lane.aside.splice(0, room);
    lane.reading = batch.length;
    this.taken += batch.length;
    const read = (seq: number) =>
      this.io.read(seq).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
    void Promise.all(batch.map((aside) => read(aside.seq))).then((stored) => {
      lane.reading = 0;
      this.taken -= batch.length;
      const failed = stored.findIndex((s) => s instanceof Error);
      if (failed >= 0) {
        // Not read (NATS is away): what was not read yet goes back, in its place, for a next try.
        this.log.error({ err: stored[failed], ...lane.a }, 'set-aside events not read back; retrying');
        lane.aside.unshift(...batch.slice(failed));
        setTimeout(() => this.readBack(lane), 1000).unref();
      }
      batch.slice(0, failed >= 0 ? failed : batch.length).forEach((aside, k) => {
        const s = stored[k] as { subject: string; data: Uint8Array } | null;
        if (!s) return; // gone: handled by another replica since, or expired
        if (this.stopping) return this.io.reply(aside.reply, '-NAK');
        this.take(lane, this.readBackMessage(aside, s));
      });
      this.readBack(lane);
      this.forgetIfIdle(lane);
      for (const wake of this.wakers.splice(0)) wake();
    });
  }

  private readBackMessage(aside: Aside, stored: { subject: string; data: Uint8Array }): UpMessage {
    return {
      seq: aside.seq,
      subject: stored.subject,
      data: stored.data,
      deliveries: aside.deliveries,
      ack: () => this.io.reply(aside.reply, '+ACK'),
      term: () => this.io.reply(aside.reply, '+TERM'),
      nak: (delayMs) =>
        this.io.reply(aside.reply, delayMs > 0 ? `-NAK ${JSON.stringify({ delay: delayMs * 1e6 })}` : '-NAK'),
    };
  }

  /** Starts waiting events while slots are free, one lane's turn at a time. */
  private pump() {
    while (this.running < EVENT_CONCURRENCY) {
      const lane = this.ready.values().next().value;
      if (!lane) return;
      this.ready.delete(lane);
      this.start(lane, lane.waiting.shift()!);
      // At the back: the other lanes' turn first.
      if (lane.waiting.length > 0 && lane.running < AGENT_RUNNING) this.ready.add(lane);
    }
  }

  private start(lane: Lane, msg: UpMessage) {
    lane.running++;
    this.running++;
    const task: Promise<void> = this.handle(msg, lane.a).finally(() => this.done(lane, task));
    this.tasks.add(task);
  }

  private done(lane: Lane, task: Promise<void>) {
    this.tasks.delete(task);
    lane.running--;
    this.running--;
    this.taken--;
    if (lane.waiting.length > 0 && lane.running < AGENT_RUNNING) this.ready.add(lane);
    this.readBack(lane);
    for (const other of this.starved) this.readBack(other);
    this.forgetIfIdle(lane);
    this.pump();
    for (const wake of this.wakers.splice(0)) wake();
  }

  private forgetIfIdle(lane: Lane) {
    if (this.held(lane) + lane.aside.length === 0) this.lanes.delete(lane.agentId);
  }
}
