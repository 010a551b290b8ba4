import { Body, Controller, HttpCode, Inject, Post } from '@nestjs/common';
import { InvalidInputError } from '../../platform/errors/domain-error.js';
import { MembersService, type AcceptedInvitation } from './members.service.js';

export const ACCEPT_INVITATION_PATH = '/api/v1/invitations/accept';

/** The invitee's side of an invitation: the one-time secret in the body is the credential. */
@Controller()
export class InvitationsController {
  constructor(@Inject(MembersService) private readonly members: MembersService) {}

  @Post(ACCEPT_INVITATION_PATH)
  @HttpCode(201)
  accept(@Body() body: unknown): Promise<AcceptedInvitation> {
    const token = (body as { token?: unknown } | null)?.token;
    if (typeof token !== 'string' || token.length === 0 || token.length > 200)
      throw new InvalidInputError('invalid request: body must be { "token": "<invitation token>" }');
    return this.members.acceptInvitation(token);
  }
}
