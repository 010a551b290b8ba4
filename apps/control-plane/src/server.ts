import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ValidationPipe, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { Logger } from 'pino';
import rateLimit from '@fastify/rate-limit';
import { AppModule } from './app.module.js';
import { AuthService } from './platform/auth/auth.service.js';
import { requestError } from './platform/errors/error-formatter.js';
import { CanonicalIdsPipe } from './platform/graphql/canonical-ids.pipe.js';
import type { Config } from './config/config.js';
import { FleetService } from './modules/fleet/fleet.service.js';
import { AgentMessagesConsumer } from './modules/jobs/agent-messages.consumer.js';
import { LeaseSweeper } from './modules/jobs/lease-sweeper.service.js';
import { TelemetryConsumer } from './modules/telemetry/telemetry.consumer.js';
import { TelemetryScheduler } from './modules/telemetry/telemetry-scheduler.service.js';
import { LOGGER, NestPinoLogger } from './platform/logging/logging.module.js';
import { runWithContext } from './platform/logging/request-context.js';
import { NatsService } from './platform/messaging/nats.service.js';
import { OutboxRelay } from './platform/messaging/outbox-relay.service.js';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Builds and starts the control plane: HTTP, GraphQL, NATS consumers, outbox relay, lease sweeper. */
export async function startServer(
  config: Config,
): Promise<{ app: INestApplication; url: string; log: Logger }> {
  const adapter = new FastifyAdapter({
    bodyLimit: 1024 * 1024,
    genReqId: (req: IncomingMessage) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config), adapter, {
    bufferLogs: true,
    abortOnError: false,
  });
  const log = app.get<Logger>(LOGGER);
  app.useLogger(new NestPinoLogger(log.child({ component: 'nest' })));
  app.useGlobalPipes(
    new CanonicalIdsPipe(),
    new ValidationPipe({ transform: true, forbidUnknownValues: false }),
  );
  app.enableShutdownHooks();
  const fastify = app.getHttpAdapter().getInstance();
  fastify.addHook('onRequest', (req, reply, done) => {
    void reply.header('x-request-id', req.id);
    const userAgent = req.headers['user-agent'];
    runWithContext(
      {
        requestId: String(req.id),
        ip: req.ip,
        userAgent: typeof userAgent === 'string' ? userAgent : undefined,
      },
      done,
    );
  });
  // One access line per request; the logger adds requestId and (once authenticated) tenantId.
  const access = log.child({ component: 'http' });
  fastify.addHook('onResponse', (req, reply, done) => {
    if (req.url !== '/healthz' && req.url !== '/readyz' && req.url !== '/metrics')
      access.info(
        { method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
        'request',
      );
    done();
  });

  // Per organization and principal (a principal's tokens share one budget; an unknown token counts on
  // its own, an anonymous caller per address), refused with 429 and Retry-After before any work is
  // done. The counters are per replica: N replicas allow up to N times the limit (a shared store
  // comes later).
  const auth = app.get(AuthService);
  await app.register(rateLimit, {
    global: true,
    max: config.limits.requestsPerMinute,
    timeWindow: 60_000,
    allowList: (req) => /^\/(healthz|readyz|metrics)\b/.test(req.url),
    keyGenerator: (req) => auth.rateLimitKey(req.headers.authorization, req.ip),
  });

  // A request Fastify refuses before any route runs (a body that is not JSON or over the limit, a
  // content type no parser takes) gets the REST routes' error shape. The GraphQL route has its own
  // handler (Mercurius's), which goes through the GraphQL error formatter.
  fastify.setErrorHandler((err, _req, reply) => {
    const refused = requestError(err);
    if (!refused) return reply.send(err); // to Fastify's default handler
    return reply.status(refused.status).send({ error: { code: refused.code, message: refused.message } });
  });

  await app.get(NatsService).connect();
  await app.init();
  const fleet = app.get(FleetService);
  await fleet.syncRevocations();
  app.get(NatsService).onReconnect(() => fleet.syncRevocations());
  await app.get(AgentMessagesConsumer).start();
  app.get(OutboxRelay).start();
  app.get(LeaseSweeper).start();
  await app.get(TelemetryConsumer).start();
  await app.get(TelemetryScheduler).start();
  await app.listen(config.http.port, config.http.host);
  const address = fastify.server.address();
  const port = typeof address === 'object' && address ? address.port : config.http.port;
  const url = `http://127.0.0.1:${port}`;
  log.info({ url, graphql: `${url}/graphql` }, 'control plane listening');
  return { app, url, log };
}
