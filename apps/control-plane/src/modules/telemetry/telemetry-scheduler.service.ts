/**
 * Runs the periodic telemetry work on every replica: rollups, idle detection and retention. Each pass
 * decides for itself, through its task row in Postgres, whether this replica does it this time, so
 * N replicas never do the same work at once and a replica that dies leaves nothing half-done. Passes
 * of one kind never overlap in a process; timers are jittered so replicas do not knock in step.
 */
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { Logger } from 'pino';
import { CONFIG, type Config } from '../../config/config.js';
import { LOGGER } from '../../platform/logging/logging.module.js';
import { CLOCK, type Clock } from './clock.js';
import { IdleDetector } from './idle-detector.service.js';
import { TelemetryRetention } from './retention.service.js';
import { TelemetryRollups } from './rollups.service.js';

@Injectable()
export class TelemetryScheduler implements OnApplicationShutdown {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly running = new Set<string>();
  private stopped = false;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(TelemetryRollups) private readonly rollups: TelemetryRollups,
    @Inject(TelemetryRetention) private readonly retention: TelemetryRetention,
    @Inject(IdleDetector) private readonly idle: IdleDetector,
  ) {}

  /** Makes today's partitions (idempotent, cheap when they exist), then starts the timers. */
  async start(): Promise<void> {
    await this.retention.ensurePartitions(this.clock());
    const t = this.config.telemetry;
    this.every('rollup', t.rollupIntervalSeconds, async () => {
      // A pass covers at most 30 minutes: keep going while it is catching up.
      for (let i = 0; i < 10 && !this.stopped; i++) {
        const pass = await this.rollups.run(this.clock());
        if (!pass || pass.to.getTime() >= this.clock().getTime() - t.rollupSettleSeconds * 1000 - 60_000)
          break;
      }
    });
    this.every('idle', t.idleIntervalSeconds, () => this.idle.run(this.clock()));
    this.every('retention', t.retentionIntervalSeconds, () => this.retention.run(this.clock()), true);
  }

  private every(name: string, seconds: number, work: () => Promise<unknown>, now = false): void {
    const tick = () => {
      if (this.stopped || this.running.has(name)) return;
      this.running.add(name);
      work()
        .catch((err: unknown) => this.log.error({ err, task: name }, 'telemetry task failed'))
        .finally(() => this.running.delete(name));
    };
    const period = seconds * 1000;
    const first = setTimeout(
      () => {
        tick();
        this.timers.push(setInterval(tick, period));
      },
      now ? 0 : Math.random() * period,
    );
    this.timers.push(first);
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
  }
}
