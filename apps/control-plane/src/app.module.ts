import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import type { Config } from './config/config.js';
import { ConfigModule } from './config/config.module.js';
import { FleetModule } from './modules/fleet/fleet.module.js';
import { DeploymentsModule } from './modules/deployments/deployments.module.js';
import { JobsModule } from './modules/jobs/jobs.module.js';
import { ModelsModule } from './modules/models/models.module.js';
import { OrgsModule } from './modules/orgs/orgs.module.js';
import { ProjectsModule } from './modules/projects/projects.module.js';
import { TelemetryModule } from './modules/telemetry/telemetry.module.js';
import { AuditModule } from './platform/audit/audit.module.js';
import { AuthModule } from './platform/auth/auth.module.js';
import { DatabaseModule } from './platform/database/database.module.js';
import { HttpErrorFilter } from './platform/errors/http-exception.filter.js';
import { HearthGraphQLModule } from './platform/graphql/graphql.module.js';
import { HealthModule } from './platform/health/health.module.js';
import { LoggingModule } from './platform/logging/logging.module.js';
import { MessagingModule } from './platform/messaging/messaging.module.js';

@Module({})
export class AppModule {
  static forRoot(config: Config): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggingModule,
        DatabaseModule,
        MessagingModule,
        AuthModule,
        AuditModule,
        HearthGraphQLModule,
        HealthModule,
        FleetModule,
        JobsModule,
        ProjectsModule,
        OrgsModule,
        ModelsModule,
        DeploymentsModule,
        TelemetryModule,
      ],
      providers: [{ provide: APP_FILTER, useClass: HttpErrorFilter }],
    };
  }
}
