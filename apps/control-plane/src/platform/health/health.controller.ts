import { Controller, Get, Header, HttpCode, Inject, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { DataSource } from 'typeorm';
import { NatsService } from '../messaging/nats.service.js';
import { registry } from '../metrics/metrics.js';

@Controller()
export class HealthController {
  constructor(
    @Inject(DataSource) private readonly ds: DataSource,
    @Inject(NatsService) private readonly nats: NatsService,
  ) {}

  /** The process is alive. */
  @Get('healthz')
  @HttpCode(200)
  healthz() {
    return { status: 'ok' };
  }

  /** Postgres and NATS are reachable: send traffic here. */
  @Get('readyz')
  async readyz(@Res() reply: FastifyReply) {
    const [postgres, nats] = await Promise.all([
      this.ds.query('SELECT 1').then(
        () => true,
        () => false,
      ),
      this.nats.ping(),
    ]);
    const ready = postgres && nats;
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', postgres, nats });
  }

  @Get('metrics')
  @Header('content-type', 'text/plain; version=0.0.4')
  metrics() {
    return registry.metrics();
  }
}
