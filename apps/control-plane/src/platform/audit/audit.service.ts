/**
 * The audit trail. record() writes in the caller's transaction, so a change and its audit event
 * commit or roll back together (fail closed). Sequencing, time and the hash chain are done by the
 * database (migration 1763798400000), serialized per organization; this service only says what happened.
 */
import { Inject, Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import type { EntityManager } from 'typeorm';
import type { Principal } from '../auth/principal.js';
import { requestContext } from '../logging/request-context.js';
import { Transactions } from '../tenancy/transactions.js';

/** The catalog of event types. */
export const AUDIT_ACTIONS = [
  'organization.create',
  'join_token.create',
  'agent.enroll',
  'agent.revoke',
  'job.submit',
  'job.cancel',
  'member.add',
  'member.invite',
  'member.remove',
  'role_binding.create',
  'role_binding.delete',
  'role.create',
  'role.update',
  'role.delete',
  'project.create',
  'project.update',
  'service_account.create',
  'service_account.delete',
  'api_token.create',
  'api_token.revoke',
  'telemetry.settings.update',
  'telemetry.gpu_price.set',
  'telemetry.idle_alert',
  'auth.failed',
  'permission.denied',
  'model.create',
  'model_version.register',
  'model_version.stage',
  'deployment.create',
  'deployment.update',
  'deployment.stop',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export interface AuditActor {
  type: 'user' | 'service_account' | 'agent' | 'system';
  id: string | null;
  tokenId?: string | null;
}

/** The audit actor for an authenticated API caller. */
export function actorOf(p: Principal): AuditActor {
  return { type: p.kind, id: p.userId, tokenId: p.tokenId };
}

export interface AuditEvent {
  action: AuditAction;
  target?: { type: string; id: string };
  outcome?: 'success' | 'failure' | 'denied';
  changes?: Record<string, unknown>;
}

const SECRET_KEY = /token|secret|password|seed|jwt|credential|authorization/i;

/** Drops the values of secret-looking keys, at any depth. */
export function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, SECRET_KEY.test(k) ? '[redacted]' : redact(v)]),
    );
  return value;
}

export interface ChainVerification {
  ok: boolean;
  checked: number;
  firstBrokenSeq: number | null;
  reason: string | null;
}

@Injectable()
export class AuditService {
  constructor(@Inject(Transactions) private readonly tx: Transactions) {}

  async record(m: EntityManager, tenantId: string, actor: AuditActor, e: AuditEvent): Promise<void> {
    const ctx = requestContext();
    await m.query(
      `INSERT INTO audit_events (id, tenant_id, seq, occurred_at, actor_type, actor_id, actor_ip, actor_user_agent,
                                 actor_token_id, action, target_type, target_id, outcome, request_id, changes,
                                 prev_hash, hash)
       VALUES ($1, $2, 0, now(), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, '\\x', '\\x')`,
      [
        uuidv7(),
        tenantId,
        actor.type,
        actor.id,
        ctx?.ip ?? null,
        ctx?.userAgent?.slice(0, 512) ?? null,
        actor.tokenId ?? null,
        e.action,
        e.target?.type ?? null,
        e.target?.id ?? null,
        e.outcome ?? 'success',
        ctx?.requestId ?? null,
        JSON.stringify(redact(e.changes ?? {})),
      ],
    );
  }

  /**
   * Walks an organization's chain from the first event: every event must follow the previous one
   * (seq), link to its hash (prev_hash) and hash to what it stores; the chain head must be the last
   * event. Returns the first link that does not hold.
   */
  async verify(tenantId: string): Promise<ChainVerification> {
    // The chain head is readable only by the system role; the scope is the caller's own tenant.
    return this.tx.system(async (m) => {
      const rows: { seq: string; prev_hash: Buffer; hash: Buffer; recomputed: Buffer }[] = await m.query(
        `SELECT seq, prev_hash, hash, hearth_audit_hash(e) AS recomputed
           FROM audit_events e WHERE tenant_id = $1 ORDER BY seq`,
        [tenantId],
      );
      const [head]: { seq: string; hash: Buffer }[] = await m.query(
        `SELECT seq, hash FROM audit_chain_heads WHERE tenant_id = $1`,
        [tenantId],
      );
      const broken = (seq: number, reason: string, checked: number): ChainVerification => ({
        ok: false,
        checked,
        firstBrokenSeq: seq,
        reason,
      });
      let prev: Buffer = Buffer.alloc(0);
      for (const [i, row] of rows.entries()) {
        const expected = i + 1;
        const seq = Number(row.seq);
        if (seq !== expected) return broken(expected, `event ${expected} is missing (found ${seq} next)`, i);
        if (!row.prev_hash.equals(prev))
          return broken(seq, `event ${seq} does not link to event ${seq - 1}`, i);
        if (!row.hash.equals(row.recomputed))
          return broken(seq, `event ${seq} was altered (its hash does not match)`, i);
        prev = row.hash;
      }
      const headSeq = head ? Number(head.seq) : 0;
      if (headSeq > rows.length)
        return broken(rows.length + 1, `events ${rows.length + 1} to ${headSeq} are missing`, rows.length);
      if (head && rows.length && !head.hash.equals(prev))
        return broken(rows.length, `the chain head does not match event ${rows.length}`, rows.length);
      return { ok: true, checked: rows.length, firstBrokenSeq: null, reason: null };
    });
  }
}
