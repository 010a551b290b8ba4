import { Module } from '@nestjs/common';
import { MessagingModule } from '../../platform/messaging/messaging.module.js';
import { FleetResolver } from './fleet.resolver.js';
import { FleetService } from './fleet.service.js';
import { JoinController } from './join.controller.js';

@Module({
  imports: [MessagingModule],
  controllers: [JoinController],
  providers: [FleetService, FleetResolver],
  exports: [FleetService],
})
export class FleetModule {}
