import { Module } from '@nestjs/common';
import { FleetModule } from '../fleet/fleet.module.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { AgentMessagesConsumer } from './agent-messages.consumer.js';
import { AttemptsService } from './attempts.service.js';
import { Dispatcher } from './dispatcher.service.js';
import { JobUpdates } from './job-updates.service.js';
import { JobWatcher } from './job-watcher.js';
import { JobKinds } from './job-kinds.js';
import { JobsResolver } from './jobs.resolver.js';
import { JobsService } from './jobs.service.js';
import { LeaseSweeper } from './lease-sweeper.service.js';

@Module({
  imports: [FleetModule, ProjectsModule],
  providers: [
    JobKinds,
    JobsService,
    JobsResolver,
    JobWatcher,
    Dispatcher,
    JobUpdates,
    AttemptsService,
    AgentMessagesConsumer,
    LeaseSweeper,
  ],
  exports: [AgentMessagesConsumer, LeaseSweeper, JobKinds, JobsService],
})
export class JobsModule {}
