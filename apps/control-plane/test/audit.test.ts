/**
 * The audit trail: every mutation leaves an event in the same transaction (fail closed), events are
 * hash-chained per organization, the app role can only append, and tampering by an administrator
 * (update, delete, reorder, truncate) is caught by verification, which names the first bad link.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import {
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  HEARTH_BIN,
  joinAgent,
  query,
  runProcess,
  startControlPlane,
  type ControlPlane,
  type TestDatabase,
  SHARED_NATS_URL,
} from '@hearth/testing';

let db: TestDatabase;
let cp: ControlPlane;

interface Event {
  seq: number;
  action: string;
  outcome: string;
  actor: {
    type: string;
    id: string | null;
    ip: string | null;
    userAgent: string | null;
    tokenId: string | null;
  };
  target: { type: string; id: string } | null;
  requestId: string | null;
  changes: string;
}
const EVENTS = `{ auditEvents(first: 100) { edges { node { seq action outcome actor { type id ip userAgent tokenId } target { type id } requestId changes } } } }`;
const events = async (c: GraphQLClient) =>
  (await c.ok<{ auditEvents: { edges: { node: Event }[] } }>(EVENTS)).auditEvents.edges.map((e) => e.node);
const verify = async (c: GraphQLClient) =>
  (
    await c.ok<{
      verifyAuditChain: {
        ok: boolean;
        checked: number;
        firstBrokenSeq: number | null;
        reason: string | null;
      };
    }>(`{ verifyAuditChain { ok checked firstBrokenSeq reason } }`)
  ).verifyAuditChain;

/** An organization with `n` join tokens created: n + 1 events. */
async function orgWithEvents(name: string, n: number) {
  const org = await createOrganization(db.appUrl, name);
  const api = new GraphQLClient(cp.graphqlUrl, org.adminToken);
  for (let i = 0; i < n; i++) await api.ok(`mutation { createJoinToken { token } }`);
  return { ...org, api };
}

/** Runs statements as the database superuser with triggers off: what a rogue administrator could do. */
async function tamper(sql: string, params: unknown[] = []) {
  const c = new pg.Client({ connectionString: db.adminUrl });
  await c.connect();
  try {
    await c.query(`SET session_replication_role = replica`);
    await c.query(sql, params);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL: SHARED_NATS_URL });
});

afterAll(async () => {
  await cp?.stop();
  await db?.drop();
});

describe('audit events', () => {
  it('records every mutation with its actor, target and request, secrets redacted, per organization', async () => {
    const a = await createOrganization(db.appUrl, 'Audited');
    const b = await createOrganization(db.appUrl, 'Other');
    const api = new GraphQLClient(cp.graphqlUrl, a.adminToken);
    const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
      `mutation { createJoinToken { token } }`,
    );
    const joined = await joinAgent(cp.url, createJoinToken.token);
    const { submitJob } = await api.ok<{ submitJob: { id: string } }>(
      `mutation { submitJob(input: { kind: COMMAND, command: ["train.sh"], env: [{ name: "API_KEY", value: "s3cr3t-value" }] }) { id } }`,
    );
    await api.ok(`mutation($id: ID!) { cancelJob(id: $id) { id } }`, { id: submitJob.id });
    await api.ok(`mutation($id: ID!) { revokeAgent(id: $id) { id } }`, { id: joined.id });

    const list = await events(api);
    expect(list.map((e) => [e.seq, e.action])).toEqual([
      [6, 'agent.revoke'],
      [5, 'job.cancel'],
      [4, 'job.submit'],
      [3, 'agent.enroll'],
      [2, 'join_token.create'],
      [1, 'organization.create'],
    ]);
    const submit = list.find((e) => e.action === 'job.submit')!;
    expect(submit).toMatchObject({ outcome: 'success', target: { type: 'job', id: submitJob.id } });
    expect(submit.actor).toMatchObject({ type: 'user', ip: '127.0.0.1' });
    expect(submit.actor.tokenId).toMatch(/^[0-9a-f-]{36}$/);
    expect(submit.actor.userAgent).toBeTruthy();
    expect(submit.requestId).toBeTruthy();
    expect(JSON.parse(submit.changes)).toMatchObject({ command: ['train.sh'], envNames: ['API_KEY'] });
    const all = JSON.stringify(list);
    expect(all).not.toContain('s3cr3t-value');
    expect(all).not.toContain(createJoinToken.token);
    expect(all).not.toContain(a.adminToken);
    expect(list.find((e) => e.action === 'agent.enroll')!.actor).toMatchObject({
      type: 'agent',
      id: joined.id,
    });
    expect(await verify(api)).toEqual({ ok: true, checked: 6, firstBrokenSeq: null, reason: null });

    const other = await events(new GraphQLClient(cp.graphqlUrl, b.adminToken));
    expect(other.map((e) => e.action)).toEqual(['organization.create']);
  });

  it('fails closed: when the audit event cannot be written, the change is rolled back', async () => {
    const org = await orgWithEvents('Fail Closed', 0);
    await query(
      db.adminUrl,
      `ALTER TABLE audit_events ADD CONSTRAINT test_block CHECK (action <> 'job.submit') NOT VALID`,
    );
    try {
      const r = await org.api.request(
        `mutation { submitJob(input: { kind: COMMAND, command: ["true"] }) { id } }`,
      );
      expect(r.errors?.[0].extensions?.code).toBe('INTERNAL_SERVER_ERROR');
    } finally {
      await query(db.adminUrl, `ALTER TABLE audit_events DROP CONSTRAINT test_block`);
    }
    const jobs = await query<{ n: string }>(
      db.adminUrl,
      `SELECT count(*) AS n FROM jobs WHERE tenant_id = $1`,
      [org.organizationId],
    );
    expect(jobs[0].n).toBe('0');
  });

  it('lets the app role append and read, never update, delete or truncate', async () => {
    const org = await orgWithEvents('Append Only', 1);
    const c = new pg.Client({ connectionString: db.appUrl });
    await c.connect();
    try {
      await c.query(`SELECT set_config('app.tenant_id', $1, false)`, [org.organizationId]);
      await expect(c.query(`UPDATE audit_events SET action = 'x'`)).rejects.toThrow(/permission denied/);
      await expect(c.query(`DELETE FROM audit_events`)).rejects.toThrow(/permission denied/);
      await expect(c.query(`TRUNCATE audit_events`)).rejects.toThrow(/permission denied/);
      await expect(c.query(`UPDATE audit_chain_heads SET seq = 0`)).rejects.toThrow(/permission denied/);
    } finally {
      await c.end();
    }
    // Even the owner's ordinary path is refused by the append-only trigger.
    await expect(
      query(db.adminUrl, `UPDATE audit_events SET action = 'x' WHERE tenant_id = $1`, [org.organizationId]),
    ).rejects.toThrow(/append-only/);
    await expect(
      query(db.adminUrl, `DELETE FROM audit_events WHERE tenant_id = $1`, [org.organizationId]),
    ).rejects.toThrow(/append-only/);
    expect((await verify(org.api)).ok).toBe(true);
  });
});

describe('tampering is detected and located', () => {
  it('an altered event', async () => {
    const org = await orgWithEvents('Altered', 4);
    await tamper(
      `UPDATE audit_events SET changes = '{"ttlSeconds": 99999}' WHERE tenant_id = $1 AND seq = 3`,
      [org.organizationId],
    );
    expect(await verify(org.api)).toMatchObject({ ok: false, firstBrokenSeq: 3, checked: 2 });
  });

  it('a deleted event', async () => {
    const org = await orgWithEvents('Deleted', 4);
    await tamper(`DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 2`, [org.organizationId]);
    expect(await verify(org.api)).toMatchObject({
      ok: false,
      firstBrokenSeq: 2,
      reason: 'event 2 is missing (found 3 next)',
    });
  });

  it('reordered events', async () => {
    const org = await orgWithEvents('Reordered', 4);
    const t = org.organizationId;
    for (const [from, to] of [
      [2, -2],
      [3, 2],
      [-2, 3],
    ])
      await tamper(`UPDATE audit_events SET seq = $2 WHERE tenant_id = $1 AND seq = $3`, [t, to, from]);
    expect(await verify(org.api)).toMatchObject({ ok: false, firstBrokenSeq: 2 });
  });

  it('the last events cut off, and the CLI says so with exit code 1', async () => {
    const org = await orgWithEvents('Cut Off', 4);
    await tamper(`DELETE FROM audit_events WHERE tenant_id = $1 AND seq >= 4`, [org.organizationId]);
    expect(await verify(org.api)).toMatchObject({
      ok: false,
      firstBrokenSeq: 4,
      reason: 'events 4 to 5 are missing',
    });
    const cli = await runProcess(
      process.execPath,
      [HEARTH_BIN, 'audit', 'verify', '--org', org.organizationId],
      { DATABASE_URL: db.appUrl },
    );
    expect(cli.code).toBe(1);
    expect(cli.stdout).toContain('BROKEN at event 4');
  });

  it('a truncated table (every organization), while an intact chain verifies OK in the CLI', async () => {
    const intact = await orgWithEvents('Intact', 2);
    const ok = await runProcess(
      process.execPath,
      [HEARTH_BIN, 'audit', 'verify', '--org', intact.organizationId],
      { DATABASE_URL: db.appUrl },
    );
    expect(ok).toMatchObject({ code: 0 });
    expect(ok.stdout).toContain('OK: 3 events');
    await tamper(`TRUNCATE audit_events`);
    expect(await verify(intact.api)).toMatchObject({
      ok: false,
      firstBrokenSeq: 1,
      reason: 'events 1 to 3 are missing',
    });
  });
});
