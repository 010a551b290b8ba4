/**
 * Access administration end to end, against the real control plane and Postgres: projects and
 * project-scoped bindings, custom roles, escalation rules, members (invite, accept, change, remove),
 * personal and service-account tokens (scopes, project, expiry, last use, revocation), and the audit
 * trail of all of it, including failed authentications and denials decided inside services.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  collect,
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  query,
  startControlPlane,
  waitFor,
  type ControlPlane,
  type TestDatabase,
  SHARED_NATS_URL,
} from '@hearth/testing';
import { PROJECT_PERMISSIONS, ROLES } from '../src/platform/access/permissions.js';

let db: TestDatabase;
let cp: ControlPlane;
let owner: GraphQLClient;
let ownerId: string;
let other: GraphQLClient;
let p1: string;
let p2: string;
let otherProject: string;

const SUBMIT = `mutation($p: ID) { submitJob(input: { kind: COMMAND, command: ["true"], projectId: $p,
  agentSelector: { labels: [{ key: "pool", value: "none" }] } }) { id projectId } }`;

async function invite(email: string, role: string, projectId?: string) {
  const { inviteMember } = await owner.ok<{
    inviteMember: { token: string; member: { id: string; status: string } };
  }>(`mutation($i: InviteMemberInput!) { inviteMember(input: $i) { token member { id status } } }`, {
    i: { email, role, projectId },
  });
  return inviteMember;
}

/** Invites and accepts: a member with a working API token. */
async function member(email: string, role: string, projectId?: string) {
  const inv = await invite(email, role, projectId);
  const res = await fetch(`${cp.url}/api/v1/invitations/accept`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: inv.token }),
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as { token: string; userId: string };
  return { id: body.userId, client: new GraphQLClient(cp.graphqlUrl, body.token), token: body.token };
}

async function auditActions(): Promise<{ action: string; outcome: string; changes: string }[]> {
  const r = await owner.ok<{
    auditEvents: { edges: { node: { action: string; outcome: string; changes: string } }[] };
  }>(`{ auditEvents(first: 200) { edges { node { action outcome changes } } } }`);
  return r.auditEvents.edges.map((e) => e.node);
}

beforeAll(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL: SHARED_NATS_URL });
  const a = await createOrganization(db.appUrl, 'Admin A');
  const b = await createOrganization(db.appUrl, 'Admin B');
  owner = new GraphQLClient(cp.graphqlUrl, a.adminToken);
  other = new GraphQLClient(cp.graphqlUrl, b.adminToken);
  ownerId = (await owner.ok<{ members: { id: string }[] }>(`{ members { id } }`)).members[0].id;
  const create = `mutation($n: String!) { createProject(input: { name: $n }) { id name } }`;
  p1 = (await owner.ok<{ createProject: { id: string } }>(create, { n: 'vision' })).createProject.id;
  p2 = (await owner.ok<{ createProject: { id: string } }>(create, { n: 'forecasting' })).createProject.id;
  otherProject = (await other.ok<{ createProject: { id: string } }>(create, { n: 'vision' })).createProject
    .id;
});

afterAll(async () => {
  await cp?.stop();
  await db?.drop();
});

describe('projects', () => {
  it('refuses a duplicate name with CONFLICT and an empty one with a clear message', async () => {
    const r = await owner.request(`mutation { createProject(input: { name: "vision" }) { id } }`);
    expect(r.errors?.[0]).toMatchObject({
      message: 'a project named vision already exists',
      extensions: { code: 'CONFLICT' },
    });
    const empty = await owner.request(`mutation { createProject(input: { name: "" }) { id } }`);
    expect(empty.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(empty.errors?.[0].message).toContain('name must be 1 to 100 characters');
  });

  it('confines a project-bound engineer to their project', async () => {
    const eng = await member('eng@a.test', 'ml_engineer', p1);
    const inP1 = await eng.client.ok<{ submitJob: { id: string; projectId: string } }>(SUBMIT, { p: p1 });
    expect(inP1.submitJob.projectId).toBe(p1);
    expect(await eng.client.errorCode(SUBMIT, { p: p2 })).toBe('FORBIDDEN');
    expect(await eng.client.errorCode(SUBMIT, {})).toBe('FORBIDDEN');
    expect(await eng.client.errorCode(SUBMIT, { p: otherProject })).toBe('NOT_FOUND');

    const inP2 = await owner.ok<{ submitJob: { id: string } }>(SUBMIT, { p: p2 });
    const orgWide = await owner.ok<{ submitJob: { id: string } }>(SUBMIT, {});
    for (const id of [inP2.submitJob.id, orgWide.submitJob.id]) {
      expect(await eng.client.errorCode(`query($id: ID!) { job(id: $id) { id } }`, { id })).toBe('NOT_FOUND');
      expect(await eng.client.errorCode(`mutation($id: ID!) { cancelJob(id: $id) { id } }`, { id })).toBe(
        'NOT_FOUND',
      );
    }
    const listed = await eng.client.ok<{ jobs: { edges: { node: { id: string } }[] } }>(
      `{ jobs { edges { node { id } } } }`,
    );
    expect(listed.jobs.edges.map((e) => e.node.id)).toEqual([inP1.submitJob.id]);

    const projects = await eng.client.ok<{ projects: { id: string; myPermissions: string[] }[] }>(
      `{ projects { id myPermissions } }`,
    );
    expect(projects.projects).toEqual([
      {
        id: p1,
        myPermissions: PROJECT_PERMISSIONS.filter((perm) => ROLES.ml_engineer.includes(perm)),
      },
    ]);
    expect(await eng.client.errorCode(`query($id: ID!) { project(id: $id) { id } }`, { id: p2 })).toBe(
      'NOT_FOUND',
    );
    // Organization-wide operations need an organization-wide binding.
    expect(await eng.client.errorCode(`{ agents { id } }`)).toBe('FORBIDDEN');
    // Field-level policy: without agents:read, a job's agent is not shown.
    const { myPermissions } = await eng.client.ok<{ myPermissions: string[] }>(`{ myPermissions }`);
    expect(myPermissions).not.toContain('agents:read');
  });
});

describe('custom roles', () => {
  it('refuses unknown permissions, names them, and creates nothing', async () => {
    const r = await owner.request(
      `mutation { createRole(input: { name: "ops", permissions: ["jobs:read", "jobs:delete-all"] }) { id } }`,
    );
    expect(r.errors?.[0]).toMatchObject({
      message: 'unknown permission jobs:delete-all; see the permission catalog',
      extensions: { code: 'BAD_USER_INPUT' },
    });
    const { roles } = await owner.ok<{ roles: { name: string }[] }>(`{ roles { name } }`);
    expect(roles.map((x) => x.name)).not.toContain('ops');
  });

  it('binds a custom role whose permissions then hold, and refuses to delete it while bound', async () => {
    const { createRole } = await owner.ok<{
      createRole: { id: string; permissions: string[]; builtIn: boolean };
    }>(
      `mutation { createRole(input: { name: "job-watcher", permissions: ["jobs:read", "agents:read"] }) { id permissions builtIn } }`,
    );
    expect(createRole).toMatchObject({ permissions: ['agents:read', 'jobs:read'], builtIn: false });
    const watcher = await member('watcher@a.test', 'job-watcher');
    const { myPermissions } = await watcher.client.ok<{ myPermissions: string[] }>(`{ myPermissions }`);
    expect(myPermissions).toEqual(['jobs:read', 'agents:read']);
    const del = await owner.request(`mutation($id: ID!) { deleteRole(id: $id) { id } }`, {
      id: createRole.id,
    });
    expect(del.errors?.[0]).toMatchObject({ extensions: { code: 'CONFLICT' } });
    expect(del.errors?.[0].message).toContain('still bound 1 time(s)');
    // Widening the role widens its holders' access on their next request.
    await owner.ok(
      `mutation($id: ID!) { updateRole(input: { id: $id, permissions: ["jobs:read", "agents:read", "jobs:cancel"] }) { id } }`,
      {
        id: createRole.id,
      },
    );
    const after = await watcher.client.ok<{ myPermissions: string[] }>(`{ myPermissions }`);
    expect(after.myPermissions).toContain('jobs:cancel');
  });
});

describe('privilege escalation', () => {
  let admin: Awaited<ReturnType<typeof member>>;
  let viewer: Awaited<ReturnType<typeof member>>;
  beforeAll(async () => {
    admin = await member('admin@a.test', 'admin');
    viewer = await member('viewer@a.test', 'viewer');
  });

  it('refuses granting a permission the caller lacks', async () => {
    const r = await admin.client.request(
      `mutation($i: ChangeRoleInput!) { changeMemberRole(input: $i) { id } }`,
      { i: { principalId: viewer.id, role: 'owner' } },
    );
    expect(r.errors?.[0]).toMatchObject({ extensions: { code: 'FORBIDDEN' } });
    expect(r.errors?.[0].message).toBe('the owner role would grant org:admin, which you do not hold');
    const role = await admin.client.request(
      `mutation { createRole(input: { name: "sneaky", permissions: ["org:admin"] }) { id } }`,
    );
    expect(role.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    const inv = await admin.client.request(
      `mutation { inviteMember(input: { email: "boss@a.test", role: "owner" }) { token } }`,
    );
    expect(inv.errors?.[0].extensions?.code).toBe('FORBIDDEN');
  });

  it('refuses changing one’s own role, and an admin touching an owner', async () => {
    const self = await admin.client.request(
      `mutation($i: ChangeRoleInput!) { changeMemberRole(input: $i) { id } }`,
      {
        i: { principalId: admin.id, role: 'viewer' },
      },
    );
    expect(self.errors?.[0]).toMatchObject({
      message: 'you cannot change the role of yourself',
      extensions: { code: 'FORBIDDEN' },
    });
    const demote = await admin.client.request(
      `mutation($i: ChangeRoleInput!) { changeMemberRole(input: $i) { id } }`,
      {
        i: { principalId: ownerId, role: 'viewer' },
      },
    );
    expect(demote.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    const remove = await admin.client.request(`mutation($id: ID!) { removeMember(id: $id) { id } }`, {
      id: ownerId,
    });
    expect(remove.errors?.[0].extensions?.code).toBe('FORBIDDEN');
  });

  it('keeps the last owner', async () => {
    // Every permission the owner holds, under another name.
    const { myPermissions } = await owner.ok<{ myPermissions: string[] }>(`{ myPermissions }`);
    await owner.ok(
      `mutation($p: [String!]!) { createRole(input: { name: "co-owner", permissions: $p }) { id } }`,
      {
        p: myPermissions,
      },
    );
    const co = await member('co@a.test', 'co-owner');
    const r = await co.client.request(`mutation($id: ID!) { removeMember(id: $id) { id } }`, { id: ownerId });
    expect(r.errors?.[0]).toMatchObject({
      message: 'the organization must keep at least one owner',
      extensions: { code: 'FORBIDDEN' },
    });
    expect(await owner.ok(`{ myPermissions }`)).toMatchObject({
      myPermissions: expect.arrayContaining(['org:admin']),
    });
  });

  it('audits the denials that services decide', async () => {
    const events = await auditActions();
    const denials = events.filter((e) => e.action === 'permission.denied').map((e) => JSON.parse(e.changes));
    expect(denials).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          operation: 'changeMemberRole',
          reason: 'the owner role would grant org:admin, which you do not hold',
        }),
        expect.objectContaining({
          operation: 'removeMember',
          reason: 'the organization must keep at least one owner',
        }),
      ]),
    );
  });
});

describe('members', () => {
  it('lists members with their status and bindings; an invitation works once', async () => {
    const inv = await invite('pending@a.test', 'viewer');
    expect(inv.member.status).toBe('INVITED');
    const { members } = await owner.ok<{
      members: {
        email: string;
        status: string;
        roleBindings: { role: string; projectId: string | null }[];
      }[];
    }>(`{ members { email status roleBindings { role projectId } } }`);
    expect(members.find((x) => x.email === 'pending@a.test')).toEqual({
      email: 'pending@a.test',
      status: 'INVITED',
      roleBindings: [{ role: 'viewer', projectId: null }],
    });
    expect(members.find((x) => x.email === 'eng@a.test')?.roleBindings).toEqual([
      { role: 'ml_engineer', projectId: p1 },
    ]);
    const accept = (token: string) =>
      fetch(`${cp.url}/api/v1/invitations/accept`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token }),
      });
    expect((await accept(inv.token)).status).toBe(201);
    const again = await accept(inv.token);
    expect(again.status).toBe(401);
    expect(await again.json()).toEqual({
      error: { code: 'UNAUTHENTICATED', message: 'invitation token is unknown, used or expired' },
    });
    expect(
      await owner.errorCode(
        `mutation { inviteMember(input: { email: "pending@a.test", role: "viewer" }) { token } }`,
      ),
    ).toBe('CONFLICT');
    expect(
      await owner.errorCode(
        `mutation { inviteMember(input: { email: "x@a.test", role: "superuser" }) { token } }`,
      ),
    ).toBe('BAD_USER_INPUT');
  });

  it('removing a member revokes their tokens and ends their open subscriptions at once', async () => {
    const leaver = await member('leaver@a.test', 'ml_engineer');
    const { submitJob } = await leaver.client.ok<{ submitJob: { id: string } }>(SUBMIT, {});
    const ws = leaver.client.ws();
    const events: unknown[] = [];
    const stream = collect(
      ws,
      `subscription($id: ID!) { jobUpdated(id: $id) { id state } }`,
      { id: submitJob.id },
      (e) => {
        events.push(e);
        return false;
      },
    ).then(
      () => 'completed',
      (err: unknown) => String(err),
    );
    await waitFor(async () => events.length > 0, { timeoutMs: 10_000 });
    await owner.ok(`mutation($id: ID!) { removeMember(id: $id) { status } }`, { id: leaver.id });
    const r = await leaver.client.request(`{ myPermissions }`);
    expect(r.status).toBe(401);
    expect(r.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    expect(await stream).toContain('credentials revoked');
    await ws.dispose();
    const events2 = await auditActions();
    expect(events2.find((e) => e.action === 'member.remove')).toBeDefined();
    expect(
      events2.find((e) => e.action === 'auth.failed' && JSON.parse(e.changes).reason === 'token revoked'),
    ).toBeDefined();
  });
});

describe('API tokens and service accounts', () => {
  const CREATE = `mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { token apiToken { id scopes projectId expiresAt lastUsedAt } } }`;
  type Created = {
    createApiToken: {
      token: string;
      apiToken: {
        id: string;
        scopes: string[] | null;
        projectId: string | null;
        expiresAt: string;
        lastUsedAt: string | null;
      };
    };
  };

  it('narrows a token to its scopes and project; records last use; revocation is immediate', async () => {
    const { createApiToken } = await owner.ok<Created>(CREATE, {
      i: { name: 'ci read-only', scopes: ['jobs:read'] },
    });
    expect(createApiToken.apiToken.scopes).toEqual(['jobs:read']);
    const scoped = new GraphQLClient(cp.graphqlUrl, createApiToken.token);
    expect(await scoped.ok(`{ myPermissions }`)).toEqual({ myPermissions: ['jobs:read'] });
    expect(await scoped.errorCode(SUBMIT, {})).toBe('FORBIDDEN');
    await scoped.ok(`{ jobs { edges { node { id } } } }`);
    const { apiTokens } = await owner.ok<{ apiTokens: { id: string; lastUsedAt: string | null }[] }>(
      `{ apiTokens { id lastUsedAt } }`,
    );
    expect(apiTokens.find((t) => t.id === createApiToken.apiToken.id)?.lastUsedAt).not.toBeNull();
    // A scoped token cannot mint a broader one.
    expect(await scoped.errorCode(CREATE, { i: { name: 'wider' } })).toBe('FORBIDDEN');
    await owner.ok(`mutation($id: ID!) { revokeApiToken(id: $id) { revokedAt } }`, {
      id: createApiToken.apiToken.id,
    });
    expect((await scoped.request(`{ myPermissions }`)).status).toBe(401);

    const confined = await owner.ok<Created>(CREATE, { i: { name: 'vision ci', projectId: p1 } });
    const p1Token = new GraphQLClient(cp.graphqlUrl, confined.createApiToken.token);
    const job = await p1Token.ok<{ submitJob: { projectId: string } }>(SUBMIT, {});
    expect(job.submitJob.projectId).toBe(p1);
    expect(await p1Token.errorCode(SUBMIT, { p: p2 })).toBe('FORBIDDEN');
    expect(await p1Token.errorCode(`{ agents { id } }`)).toBe('FORBIDDEN');
  });

  it('refuses unknown scopes, bad lifetimes and other organizations’ projects', async () => {
    const r = await owner.request(CREATE, { i: { name: 'x', scopes: ['jobs:everything'] } });
    expect(r.errors?.[0]).toMatchObject({
      message: 'unknown permission jobs:everything; see the permission catalog',
    });
    expect(await owner.errorCode(CREATE, { i: { name: 'x', expiresInSeconds: 10 } })).toBe('BAD_USER_INPUT');
    expect(await owner.errorCode(CREATE, { i: { name: 'x', projectId: otherProject } })).toBe('NOT_FOUND');
  });

  it('rejects an expired token with 401 and audits the attempt', async () => {
    const { createApiToken } = await owner.ok<Created>(CREATE, {
      i: { name: 'short', expiresInSeconds: 60 },
    });
    await query(db.adminUrl, `UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, [
      createApiToken.apiToken.id,
    ]);
    const r = await new GraphQLClient(cp.graphqlUrl, createApiToken.token).request(`{ myPermissions }`);
    expect(r.status).toBe(401);
    const failed = (await auditActions())
      .filter((e) => e.action === 'auth.failed')
      .map((e) => JSON.parse(e.changes));
    expect(failed).toEqual(expect.arrayContaining([{ reason: 'token expired' }]));
  });

  it('gives a service account a role and a token, and stops it when deleted', async () => {
    const { createServiceAccount } = await owner.ok<{ createServiceAccount: { id: string } }>(
      `mutation { createServiceAccount(input: { name: "github-actions", description: "CI" }) { id } }`,
    );
    await owner.ok(`mutation($i: ChangeRoleInput!) { changeMemberRole(input: $i) { id } }`, {
      i: { principalId: createServiceAccount.id, role: 'ml_engineer', projectId: p2 },
    });
    const minted = await owner.ok<Created>(CREATE, {
      i: { name: 'gha', serviceAccountId: createServiceAccount.id },
    });
    const sa = new GraphQLClient(cp.graphqlUrl, minted.createApiToken.token);
    expect((await sa.ok<{ submitJob: { projectId: string } }>(SUBMIT, { p: p2 })).submitJob.projectId).toBe(
      p2,
    );
    expect(await sa.errorCode(SUBMIT, { p: p1 })).toBe('FORBIDDEN');
    const viewer = await member('viewer2@a.test', 'viewer');
    expect(
      await viewer.client.errorCode(CREATE, {
        i: { name: 'steal', serviceAccountId: createServiceAccount.id },
      }),
    ).toBe('FORBIDDEN');
    expect(
      await other.errorCode(CREATE, { i: { name: 'steal', serviceAccountId: createServiceAccount.id } }),
    ).toBe('NOT_FOUND');
    await owner.ok(`mutation($id: ID!) { deleteServiceAccount(id: $id) { status } }`, {
      id: createServiceAccount.id,
    });
    expect((await sa.request(`{ myPermissions }`)).status).toBe(401);
  });
});
