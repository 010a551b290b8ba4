import { Global, Module } from '@nestjs/common';
import { APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { AccessResolver } from '../access/access.resolver.js';
import { AuthGuard } from './auth.guard.js';
import { AuthService } from './auth.service.js';
import { DenialAuditInterceptor } from './denial-audit.interceptor.js';
import { Sessions } from './sessions.js';

@Global()
@Module({
  providers: [
    AuthService,
    Sessions,
    AccessResolver,
    { provide: APP_GUARD, useClass: AuthGuard },
    { provide: APP_INTERCEPTOR, useClass: DenialAuditInterceptor },
  ],
  exports: [AuthService, Sessions],
})
export class AuthModule {}
