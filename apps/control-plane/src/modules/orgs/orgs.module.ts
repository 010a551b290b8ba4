import { Module } from '@nestjs/common';
import { ProjectsModule } from '../projects/projects.module.js';
import { InvitationsController } from './invitations.controller.js';
import { MembersResolver } from './members.resolver.js';
import { MembersService } from './members.service.js';
import { PrincipalsService } from './principals.service.js';
import { RolesResolver } from './roles.resolver.js';
import { RolesService } from './roles.service.js';
import { ServiceAccountsService } from './service-accounts.service.js';
import { TokensResolver } from './tokens.resolver.js';
import { TokensService } from './tokens.service.js';

/** Members, service accounts, custom roles, role bindings and API tokens of an organization. */
@Module({
  imports: [ProjectsModule],
  controllers: [InvitationsController],
  providers: [
    PrincipalsService,
    MembersService,
    ServiceAccountsService,
    RolesService,
    TokensService,
    MembersResolver,
    RolesResolver,
    TokensResolver,
  ],
})
export class OrgsModule {}
