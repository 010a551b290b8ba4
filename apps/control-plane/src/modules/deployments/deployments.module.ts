import { Module } from '@nestjs/common';
import { JobsModule } from '../jobs/jobs.module.js';
import { ModelsModule } from '../models/models.module.js';
import { DeploymentsResolver } from './deployments.resolver.js';
import { DeploymentsService } from './deployments.service.js';

@Module({
  imports: [JobsModule, ModelsModule],
  providers: [DeploymentsService, DeploymentsResolver],
})
export class DeploymentsModule {}
