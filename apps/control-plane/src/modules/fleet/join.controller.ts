import { Body, Controller, HttpCode, Inject, Post } from '@nestjs/common';
import { JOIN_PATH, JoinRequest, type JoinResponse } from '@hearth/contracts';
import { InvalidInputError } from '../../platform/errors/domain-error.js';
import { isUserPublicKey } from '../../platform/messaging/nats-auth.js';
import { FleetService } from './fleet.service.js';

/** Agent enrollment over HTTPS. The one-time join token in the body is the credential. */
@Controller()
export class JoinController {
  constructor(@Inject(FleetService) private readonly fleet: FleetService) {}

  @Post(JOIN_PATH)
  @HttpCode(201)
  join(@Body() body: unknown): Promise<JoinResponse> {
    const parsed = JoinRequest.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new InvalidInputError(
        `invalid join request: ${issue.path.join('.') || '(body)'}: ${issue.message}`,
      );
    }
    // The pattern above is only the shape; the checksum is checked before anything is written.
    if (!isUserPublicKey(parsed.data.publicKey))
      throw new InvalidInputError('invalid join request: publicKey: not a valid nkey user public key');
    return this.fleet.join(parsed.data);
  }
}
