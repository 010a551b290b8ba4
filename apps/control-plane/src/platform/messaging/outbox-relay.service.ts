/**
 * Publishes outbox rows to JetStream. A row is written in the same transaction as the state it
 * announces, so a crash after commit loses nothing.
 *
 * Two paths. The fast one: the process that committed a row publishes it at once from memory
 * (Transactions.afterCommit), then marks it published in a batched UPDATE shared with other rows;
 * no read of the outbox, no transaction held while waiting for the PubAck. The sweep: every pass
 * (at start, then every SWEEP_INTERVAL_SECONDS, and on kick) claims unpublished rows with FOR UPDATE
 * SKIP LOCKED and publishes them: rows of a process that died, rows whose fast publish failed. The
 * sweep skips what this process has in flight and rows younger than a moment (another replica's fast
 * path is on them). Either way the JetStream message id is the row's msg_id (the attempt id for
 * dispatches): a row published twice (by a replica and the sweep, or again after a crash between
 * publish and mark) is dropped by the server's de-duplication.
 */
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { Logger } from 'pino';
import { CONFIG, type Config } from '../../config/config.js';
import { LOGGER } from '../logging/logging.module.js';
import { Transactions } from '../tenancy/transactions.js';
import { NatsService } from './nats.service.js';

const BATCH = 200;
/** The sweep leaves rows this young to the fast path of the replica that wrote them. */
const SWEEP_MIN_AGE_MS = 1000;

interface Row {
  id: string;
  subject: string;
  msg_id: string;
  payload: Buffer;
}

/** A message whose outbox row the caller's transaction writes. */
export interface OutboxMessageToSend {
  subject: string;
  msgId: string;
  payload: Uint8Array;
}

@Injectable()
export class OutboxRelay implements OnApplicationShutdown {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  /** msg_ids this process is publishing on the fast path, or has published and not yet marked. */
  private readonly inFlight = new Set<string>();
  private readonly toMark: string[] = [];
  private marking: Promise<void> | null = null;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(NatsService) private readonly nats: NatsService,
  ) {}

  start() {
    if (!this.config.jobs.outboxRelay) {
      this.log.warn(
        'outbox relay disabled (OUTBOX_RELAY=false): nothing will be dispatched from this process',
      );
      return;
    }
    this.timer = setInterval(() => this.kick(), this.config.fleet.sweepIntervalSeconds * 1000);
    this.kick();
  }

  /**
   * The fast path, for a message whose outbox row the transaction of `m` writes: once that
   * transaction commits, publishes it, then marks the row. Never throws; a message whose publish
   * fails stays unpublished in the outbox for the sweep.
   */
  publishOnCommit(m: EntityManager, msg: OutboxMessageToSend): void {
    this.tx.afterCommit(m, () => this.publishCommitted(msg));
  }

  private publishCommitted(msg: OutboxMessageToSend): void {
    if (this.stopped || !this.config.jobs.outboxRelay) return;
    this.inFlight.add(msg.msgId);
    this.nats.js.publish(msg.subject, msg.payload, { msgID: msg.msgId, timeout: 5000 }).then(
      () => {
        this.faultAfterPublish();
        this.toMark.push(msg.msgId);
        this.markSoon();
      },
      (err: unknown) => {
        this.inFlight.delete(msg.msgId);
        this.log.warn({ err, subject: msg.subject, msgId: msg.msgId }, 'publish failed; the sweep retries');
      },
    );
  }

  /** Marks what the fast path published, in one UPDATE per batch; one batch at a time. */
  private markSoon() {
    if (this.marking) return;
    this.marking = (async () => {
      while (this.toMark.length) {
        const ids = this.toMark.splice(0, this.toMark.length);
        try {
          await this.tx.system((m) =>
            m.query(`UPDATE outbox SET published_at = now() WHERE msg_id = ANY($1::text[])`, [ids]),
          );
        } catch (err) {
          // Published but not marked: the sweep publishes them again and JetStream drops the copies.
          this.log.warn({ err, count: ids.length }, 'marking published outbox rows failed');
        }
        for (const id of ids) this.inFlight.delete(id);
      }
    })().finally(() => (this.marking = null));
  }

  private faultAfterPublish() {
    if (this.config.fault === 'relay-after-publish') {
      this.log.fatal('fault injection: exiting after publish, before marking the outbox row');
      process.exit(70);
    }
  }

  /** Asks for a sweep pass now. Coalesces concurrent requests. */
  kick() {
    if (this.stopped || !this.config.jobs.outboxRelay) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain()
      .catch((err: unknown) => this.log.error({ err }, 'outbox relay pass failed'))
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async drain() {
    for (;;) {
      const published = await this.tx.system(async (m) => {
        const rows: Row[] = await m.query(
          `SELECT id, subject, msg_id, payload FROM outbox
            WHERE published_at IS NULL AND created_at < clock_timestamp() - make_interval(secs => $1)
              AND NOT (msg_id = ANY($2::text[]))
            ORDER BY id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED`,
          [SWEEP_MIN_AGE_MS / 1000, [...this.inFlight]],
        );
        // All of a batch in flight at once: each publish waits for its PubAck, and one at a time
        // would cap dispatch at one round trip per job. Order across jobs carries no meaning.
        const results = await Promise.allSettled(
          rows.map((row) =>
            this.nats.js.publish(row.subject, row.payload, { msgID: row.msg_id, timeout: 5000 }),
          ),
        );
        if (results.some((r) => r.status === 'fulfilled')) this.faultAfterPublish();
        const done: string[] = [];
        for (const [i, r] of results.entries()) {
          const row = rows[i];
          if (r.status === 'fulfilled') {
            done.push(row.id);
            continue;
          }
          this.log.warn(
            { err: r.reason, subject: row.subject, msgId: row.msg_id },
            'outbox publish failed; will retry',
          );
          await m.query(
            `UPDATE outbox SET publish_tries = publish_tries + 1, last_error = $2 WHERE id = $1`,
            [row.id, String(r.reason).slice(0, 500)],
          );
        }
        if (done.length)
          await m.query(`UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])`, [done]);
        return { count: done.length, full: rows.length === BATCH && done.length === rows.length };
      });
      if (!published.full || published.count === 0) return;
    }
  }

  async onApplicationShutdown() {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await this.marking;
  }
}
