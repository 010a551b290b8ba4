import { Module } from '@nestjs/common';
import { JobsModule } from '../jobs/jobs.module.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { ModelJobs } from './model-jobs.js';
import { ModelsResolver } from './models.resolver.js';
import { ModelsService } from './models.service.js';

/** The model registry. Depends on jobs (TRAIN results, BATCH_PREDICT specs), never the reverse. */
@Module({
  imports: [JobsModule, ProjectsModule],
  providers: [ModelsService, ModelsResolver, ModelJobs],
  exports: [ModelsService],
})
export class ModelsModule {}
