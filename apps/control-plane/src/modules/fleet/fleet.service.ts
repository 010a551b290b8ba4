import { Inject, Injectable } from '@nestjs/common';
import { validate as isUuid, v7 as uuidv7 } from 'uuid';
import type { EntityManager } from 'typeorm';
import type { Logger } from 'pino';
import type { AgentAddress, AgentHeartbeat, JoinRequest, JoinResponse } from '@hearth/contracts';
import { CONFIG, type Config } from '../../config/config.js';
import { actorOf, AuditService } from '../../platform/audit/audit.service.js';
import { hashSecret, newSecret } from '../../platform/auth/secrets.js';
import type { Principal } from '../../platform/auth/principal.js';
import { LOGGER } from '../../platform/logging/logging.module.js';
import { NatsService } from '../../platform/messaging/nats.service.js';
import { Transactions } from '../../platform/tenancy/transactions.js';
import { AgentEntity } from './agent.entity.js';
import { AgentState, type AgentModel, type JoinToken } from './agent.model.js';
import { agentState } from './agent-state.js';
import {
  AgentKeyInUseError,
  AgentNotFoundError,
  JoinTokenExpiredError,
  JoinTokenInvalidError,
  JoinTokenTtlError,
  JoinTokenUsedError,
} from './fleet.errors.js';

@Injectable()
export class FleetService {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(Transactions) private readonly tx: Transactions,
    @Inject(NatsService) private readonly nats: NatsService,
    @Inject(AuditService) private readonly audit: AuditService,
  ) {}

  async createJoinToken(p: Principal, ttlSeconds = 3600): Promise<JoinToken> {
    const max = this.config.fleet.joinTokenMaxTtlSeconds;
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 60 || ttlSeconds > max)
      throw new JoinTokenTtlError(max);
    const { secret, hash } = newSecret('hjt');
    const expiresAt = await this.tx.tenant(p.tenantId, async (m) => {
      const id = uuidv7();
      const [row]: { expires_at: Date }[] = await m.query(
        `INSERT INTO join_tokens (id, tenant_id, token_hash, created_by, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING expires_at`,
        [id, p.tenantId, hash, p.userId, ttlSeconds],
      );
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'join_token.create',
        target: { type: 'join_token', id },
        changes: { ttlSeconds, expiresAt: row.expires_at },
      });
      return row.expires_at;
    });
    return { token: secret, expiresAt };
  }

  /**
   * Enrolls an agent: consumes the one-time token, registers the agent's public key, creates its
   * JetStream consumers and issues NATS credentials limited to its own subjects. All or nothing:
   * if any step fails the token stays unused.
   */
  async join(req: JoinRequest): Promise<JoinResponse> {
    const result = await this.tx.system(async (m) => {
      // The token is what tells us the tenant, so this lookup is a system read.
      const [token]: { id: string; tenant_id: string; expired: boolean; used: boolean }[] = await m.query(
        `SELECT id, tenant_id, expires_at <= now() AS expired, used_at IS NOT NULL AS used
           FROM join_tokens WHERE token_hash = $1 FOR UPDATE`,
        [hashSecret(req.token)],
      );
      if (!token) throw new JoinTokenInvalidError();
      if (token.used) throw new JoinTokenUsedError();
      if (token.expired) throw new JoinTokenExpiredError();
      const [taken]: unknown[] = await m.query(`SELECT 1 FROM agents WHERE public_key = $1`, [req.publicKey]);
      if (taken) throw new AgentKeyInUseError();

      const address: AgentAddress = { tenantId: token.tenant_id, agentId: uuidv7() };
      const s = req.system;
      await m.insert(AgentEntity, {
        id: address.agentId,
        tenantId: address.tenantId,
        publicKey: req.publicKey,
        hostname: s.hostname,
        os: s.os,
        arch: s.arch,
        cpus: s.cpus,
        memoryBytes: s.memoryBytes,
        gpus: s.gpus,
        agentVersion: s.agentVersion,
        labels: req.labels,
        capacity: 0,
      });
      await m.query(`UPDATE join_tokens SET used_at = now(), agent_id = $2 WHERE id = $1`, [
        token.id,
        address.agentId,
      ]);
      await this.audit.record(
        m,
        address.tenantId,
        { type: 'agent', id: address.agentId },
        {
          action: 'agent.enroll',
          target: { type: 'agent', id: address.agentId },
          changes: {
            joinTokenId: token.id,
            hostname: s.hostname,
            os: s.os,
            labels: req.labels,
            publicKey: req.publicKey,
          },
        },
      );
      // Credentials first: a key they cannot be issued for must not leave consumers behind.
      const natsJwt = await this.nats.issueAgentJwt({ ...address, publicKey: req.publicKey });
      await this.nats.ensureAgentConsumers(address);
      return { address, natsJwt };
    });
    this.log.info({ tenantId: result.address.tenantId, agentId: result.address.agentId }, 'agent joined');
    return {
      agentId: result.address.agentId,
      organizationId: result.address.tenantId,
      natsServers: (this.config.nats.agentUrl ?? this.config.nats.url ?? '').split(','),
      natsJwt: result.natsJwt,
      heartbeatSeconds: this.config.fleet.heartbeatSeconds,
    };
  }

  async listAgents(p: Principal): Promise<AgentModel[]> {
    const rows = await this.tx.tenant(p.tenantId, (m) =>
      m.find(AgentEntity, { order: { createdAt: 'ASC' } }),
    );
    return rows.map((a) => this.toModel(a));
  }

  async getAgents(p: Principal, ids: readonly string[]): Promise<Map<string, AgentModel>> {
    const valid = ids.filter((id) => isUuid(id));
    if (!valid.length) return new Map();
    const rows = await this.tx.tenant(p.tenantId, (m) =>
      m.createQueryBuilder(AgentEntity, 'a').where('a.id = ANY(:ids)', { ids: valid }).getMany(),
    );
    return new Map(rows.map((a) => [a.id, this.toModel(a)]));
  }

  /**
   * Revokes an agent: from now on nats-server refuses its credentials and drops its connection, and
   * the leases of whatever it held expire at once, so the sweeper re-queues those jobs elsewhere.
   */
  async revokeAgent(p: Principal, id: string): Promise<AgentModel> {
    if (!isUuid(id)) throw new AgentNotFoundError(id);
    const agent = await this.tx.tenant(p.tenantId, async (m) => {
      const found = await m.findOne(AgentEntity, { where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!found) throw new AgentNotFoundError(id);
      if (found.revokedAt) return found;
      await m.query(`UPDATE agents SET revoked_at = now() WHERE id = $1`, [id]);
      await this.audit.record(m, p.tenantId, actorOf(p), {
        action: 'agent.revoke',
        target: { type: 'agent', id },
        changes: { hostname: found.hostname },
      });
      await m.query(
        `UPDATE job_attempts SET lease_expires_at = now() WHERE agent_id = $1 AND state IN ('DISPATCHED','RUNNING')`,
        [id],
      );
      // Inside the transaction: if nats-server cannot be told, the revocation does not half-happen.
      await this.nats.pushRevocations(await this.tx.elevated(m, p.tenantId, (sys) => revokedKeys(sys)));
      return (await m.findOneByOrFail(AgentEntity, { id }))!;
    });
    await this.nats.deleteAgentConsumers(agent.id);
    this.log.info({ agentId: id }, 'agent revoked');
    return this.toModel(agent);
  }

  /**
   * Pushes the full revocation list to nats-server. A restarted server reloads the account from its
   * config, which lists no revocations, so this runs at boot and after every reconnect.
   */
  async syncRevocations(): Promise<void> {
    if (!this.nats.authority) return;
    const revoked = await this.tx.system((m) => revokedKeys(m));
    await this.nats.pushRevocations(revoked);
    this.log.info({ revoked: revoked.size }, 'NATS revocation list pushed');
  }

  /** Applies a heartbeat. Returns false when the agent is unknown or revoked (the message is dropped). */
  async recordHeartbeat(
    m: EntityManager,
    a: AgentAddress,
    hb: AgentHeartbeat,
  ): Promise<{ accepted: boolean; cameOnline: boolean }> {
    const s = hb.system;
    const rows: { was_online: boolean }[] = await m
      .query(
        `UPDATE agents AS a SET last_heartbeat_at = now(), hostname = $2, os = $3, arch = $4, cpus = $5, memory_bytes = $6,
              gpus = $7, agent_version = $8, capacity = $9
         FROM (SELECT id, coalesce(last_heartbeat_at > now() - make_interval(secs => $10), false) AS was_online
                 FROM agents WHERE id = $1 FOR UPDATE) AS prev
        WHERE a.id = prev.id AND a.revoked_at IS NULL
        RETURNING prev.was_online`,
        [
          a.agentId,
          s.hostname,
          s.os,
          s.arch,
          s.cpus,
          s.memoryBytes,
          JSON.stringify(s.gpus),
          s.agentVersion,
          // A stopping agent takes nothing: not even what it gives back while it drains.
          hb.stopping ? 0 : hb.freeSlots + hb.running.length,
          this.config.fleet.leaseSeconds,
        ],
      )
      .then((r: [unknown[], number]) => r[0] as { was_online: boolean }[]);
    if (!rows.length) return { accepted: false, cameOnline: false };
    return { accepted: true, cameOnline: !rows[0].was_online };
  }

  toModel(a: AgentEntity): AgentModel {
    return {
      id: a.id,
      state: agentState(a, this.config.fleet.leaseSeconds) as AgentState,
      hostname: a.hostname,
      os: a.os,
      arch: a.arch,
      cpus: a.cpus,
      memoryBytes: a.memoryBytes,
      gpus: a.gpus,
      agentVersion: a.agentVersion,
      labels: Object.entries(a.labels).map(([key, value]) => ({ key, value })),
      capacity: a.capacity,
      lastHeartbeatAt: a.lastHeartbeatAt,
      createdAt: a.createdAt,
      revokedAt: a.revokedAt,
    };
  }
}

/** Every revoked key of the shared NATS account (all tenants): the account JWT lists them all. */
async function revokedKeys(m: EntityManager): Promise<Map<string, number>> {
  const rows: { public_key: string; at: string }[] = await m.query(
    `SELECT public_key, extract(epoch FROM revoked_at)::bigint AS at FROM agents WHERE revoked_at IS NOT NULL`,
  );
  return new Map(rows.map((r) => [r.public_key, Number(r.at)]));
}
