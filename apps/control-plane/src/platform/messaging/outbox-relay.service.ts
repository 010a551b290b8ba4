/**
 * Publishes outbox rows to JetStream. A row is written in the same transaction as the state it
 * announces, so a crash after commit loses nothing: the next relay pass (here or on any replica)
 * publishes it. The JetStream message id is the row's msg_id (the attempt id for dispatches), so a
 * publish repeated after a crash between publish and mark is dropped by the server's de-duplication.
 * Rows are claimed with FOR UPDATE SKIP LOCKED: replicas never publish the same row concurrently.
 */
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { Logger } from 'pino';
import { CONFIG, type Config } from '../../config/config.js';
import { LOGGER } from '../logging/logging.module.js';
import { Transactions } from '../tenancy/transactions.js';
import { NatsService } from './nats.service.js';

const BATCH = 200;

interface Row {
  id: string;
  subject: string;
  msg_id: string;
  payload: Buffer;
}

@Injectable()
export class OutboxRelay implements OnApplicationShutdown {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;

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

  /** Asks for a pass now (after a commit that wrote outbox rows). Coalesces concurrent requests. */
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
            WHERE published_at IS NULL ORDER BY id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED`,
        );
        // All of a batch in flight at once: each publish waits for its PubAck, and one at a time
        // would cap dispatch at one round trip per job. Order across jobs carries no meaning.
        const results = await Promise.allSettled(
          rows.map((row) =>
            this.nats.js.publish(row.subject, row.payload, { msgID: row.msg_id, timeout: 5000 }),
          ),
        );
        if (this.config.fault === 'relay-after-publish' && results.some((r) => r.status === 'fulfilled')) {
          this.log.fatal('fault injection: exiting after publish, before marking the outbox row');
          process.exit(70);
        }
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
  }
}
