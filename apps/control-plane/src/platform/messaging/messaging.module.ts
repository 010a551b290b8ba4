import { Global, Module } from '@nestjs/common';
import { NatsService } from './nats.service.js';
import { OutboxRelay } from './outbox-relay.service.js';

@Global()
@Module({ providers: [NatsService, OutboxRelay], exports: [NatsService, OutboxRelay] })
export class MessagingModule {}
