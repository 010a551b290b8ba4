// Every entity TypeORM maps. Modules own their entities; the data source needs the list once.
import { AgentEntity } from '../../modules/fleet/agent.entity.js';
import { JoinTokenEntity } from '../../modules/fleet/join-token.entity.js';
import { JobAttemptEntity } from '../../modules/jobs/job-attempt.entity.js';
import { JobEntity } from '../../modules/jobs/job.entity.js';
import { ApiToken } from '../../modules/orgs/api-token.entity.js';
import { Organization } from '../../modules/orgs/organization.entity.js';
import { User } from '../../modules/orgs/user.entity.js';
import { OutboxMessage } from '../messaging/outbox-message.entity.js';

export const ENTITIES = [
  Organization,
  User,
  ApiToken,
  AgentEntity,
  JoinTokenEntity,
  JobEntity,
  JobAttemptEntity,
  OutboxMessage,
];
