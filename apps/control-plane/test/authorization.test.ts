/**
 * The authorization matrix: every GraphQL operation has a declared policy and a row here, checked for
 * every built-in role, bound organization-wide and bound in one project, against objects in its own
 * project, in another project of its organization, and in another organization. A new operation
 * without a row fails this test. myPermissions agrees with the guard; denials are audited. And the
 * IDOR sweep: every operation that takes an id, given another organization's ids, answers NOT_FOUND
 * and changes nothing there.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  collect,
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  HEARTH_BIN,
  joinAgent,
  runProcess,
  startControlPlane,
  type ControlPlane,
  type TestDatabase,
  SHARED_NATS_URL,
} from '@hearth/testing';
import {
  isProjectPermission,
  ROLE_NAMES,
  ROLES,
  type Permission,
  type RoleName,
} from '../src/platform/access/permissions.js';

interface Ids {
  jobId: string;
  agentId: string;
  projectId: string;
  memberId: string;
  bindingId: string;
  serviceAccountId: string;
  roleId: string;
  tokenId: string;
  modelId: string;
  versionId: string;
  deploymentId: string;
}
type Policy = Permission | 'authenticated';
interface Row {
  /** What the resolver declares (@Requires): the guard's check. */
  policy: Policy;
  /** What the service then requires, when stricter than the declared policy. */
  requires?: Policy;
  /** Whether the operation names an object by id (another organization's id must be NOT_FOUND). */
  byId: boolean;
  /** The object belongs to a project: a project binding reaches it only in that project. */
  project?: 'hidden' | 'refused';
  /** The operation destroys its object: each call gets fresh ones. */
  destructive?: boolean;
  doc: (ids: Ids) => { query: string; variables?: Record<string, unknown> };
}

/** A range for the telemetry queries (what it holds does not matter to authorization). */
const TELEMETRY_RANGE = { from: '2026-11-21T10:00:00Z', to: '2026-11-21T10:10:00Z' };

let n = 0;
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${n++}`;

const MATRIX: Record<string, Row> = {
  agents: { policy: 'agents:read', byId: false, doc: () => ({ query: `{ agents { id } }` }) },
  createJoinToken: {
    policy: 'agents:enroll',
    byId: false,
    doc: () => ({ query: `mutation { createJoinToken { token } }` }),
  },
  revokeAgent: {
    policy: 'agents:revoke',
    byId: true,
    doc: ({ agentId }) => ({
      query: `mutation($id: ID!) { revokeAgent(id: $id) { id } }`,
      variables: { id: agentId },
    }),
  },
  submitJob: {
    policy: 'jobs:submit',
    byId: true,
    project: 'refused',
    doc: ({ projectId }) => ({
      query: `mutation($p: ID) { submitJob(input: { kind: COMMAND, command: ["true"], projectId: $p,
        agentSelector: { labels: [{ key: "pool", value: "none" }] } }) { id } }`,
      variables: { p: projectId },
    }),
  },
  cancelJob: {
    policy: 'jobs:cancel',
    byId: true,
    project: 'hidden',
    doc: ({ jobId }) => ({
      query: `mutation($id: ID!) { cancelJob(id: $id) { id } }`,
      variables: { id: jobId },
    }),
  },
  job: {
    policy: 'jobs:read',
    byId: true,
    project: 'hidden',
    doc: ({ jobId }) => ({ query: `query($id: ID!) { job(id: $id) { id } }`, variables: { id: jobId } }),
  },
  jobs: { policy: 'jobs:read', byId: false, doc: () => ({ query: `{ jobs { edges { node { id } } } }` }) },
  jobUpdated: {
    policy: 'jobs:read',
    byId: true,
    project: 'hidden',
    doc: ({ jobId }) => ({
      query: `subscription($id: ID!) { jobUpdated(id: $id) { id } }`,
      variables: { id: jobId },
    }),
  },
  projects: {
    policy: 'projects:read',
    byId: false,
    doc: () => ({ query: `{ projects { id myPermissions } }` }),
  },
  project: {
    policy: 'projects:read',
    byId: true,
    project: 'hidden',
    doc: ({ projectId }) => ({
      query: `query($id: ID!) { project(id: $id) { id } }`,
      variables: { id: projectId },
    }),
  },
  createProject: {
    policy: 'projects:manage',
    byId: false,
    doc: () => ({
      query: `mutation($n: String!) { createProject(input: { name: $n }) { id } }`,
      variables: { n: unique('p') },
    }),
  },
  members: { policy: 'members:read', byId: false, doc: () => ({ query: `{ members { id } }` }) },
  inviteMember: {
    policy: 'members:manage',
    byId: false,
    doc: () => ({
      query: `mutation($e: String!) { inviteMember(input: { email: $e, role: "viewer" }) { token } }`,
      variables: { e: `${unique('m')}@matrix.test` },
    }),
  },
  changeMemberRole: {
    policy: 'members:manage',
    byId: true,
    doc: ({ memberId }) => ({
      query: `mutation($id: ID!) { changeMemberRole(input: { principalId: $id, role: "viewer" }) { id } }`,
      variables: { id: memberId },
    }),
  },
  removeRoleBinding: {
    policy: 'members:manage',
    byId: true,
    destructive: true,
    doc: ({ bindingId }) => ({
      query: `mutation($id: ID!) { removeRoleBinding(id: $id) { id } }`,
      variables: { id: bindingId },
    }),
  },
  removeMember: {
    policy: 'members:manage',
    byId: true,
    destructive: true,
    doc: ({ memberId }) => ({
      query: `mutation($id: ID!) { removeMember(id: $id) { id } }`,
      variables: { id: memberId },
    }),
  },
  serviceAccounts: {
    policy: 'members:read',
    byId: false,
    doc: () => ({ query: `{ serviceAccounts { id } }` }),
  },
  createServiceAccount: {
    policy: 'members:manage',
    byId: false,
    doc: () => ({
      query: `mutation($n: String!) { createServiceAccount(input: { name: $n }) { id } }`,
      variables: { n: unique('sa') },
    }),
  },
  deleteServiceAccount: {
    policy: 'members:manage',
    byId: true,
    destructive: true,
    doc: ({ serviceAccountId }) => ({
      query: `mutation($id: ID!) { deleteServiceAccount(id: $id) { id } }`,
      variables: { id: serviceAccountId },
    }),
  },
  roles: { policy: 'authenticated', byId: false, doc: () => ({ query: `{ roles { id } }` }) },
  createRole: {
    policy: 'roles:manage',
    byId: false,
    doc: () => ({
      query: `mutation($n: String!) { createRole(input: { name: $n, permissions: ["jobs:read"] }) { id } }`,
      variables: { n: unique('r') },
    }),
  },
  updateRole: {
    policy: 'roles:manage',
    byId: true,
    doc: ({ roleId }) => ({
      query: `mutation($id: ID!) { updateRole(input: { id: $id, description: "updated" }) { id } }`,
      variables: { id: roleId },
    }),
  },
  deleteRole: {
    policy: 'roles:manage',
    byId: true,
    destructive: true,
    doc: ({ roleId }) => ({
      query: `mutation($id: ID!) { deleteRole(id: $id) { id } }`,
      variables: { id: roleId },
    }),
  },
  apiTokens: {
    policy: 'authenticated',
    requires: 'members:read',
    byId: true,
    doc: ({ memberId }) => ({
      query: `query($id: ID) { apiTokens(principalId: $id) { id } }`,
      variables: { id: memberId },
    }),
  },
  createApiToken: {
    policy: 'authenticated',
    requires: 'members:manage',
    byId: true,
    doc: ({ serviceAccountId }) => ({
      query: `mutation($id: ID) { createApiToken(input: { name: "ci", serviceAccountId: $id }) { token } }`,
      variables: { id: serviceAccountId },
    }),
  },
  revokeApiToken: {
    policy: 'authenticated',
    requires: 'members:manage',
    byId: true,
    doc: ({ tokenId }) => ({
      query: `mutation($id: ID!) { revokeApiToken(id: $id) { id } }`,
      variables: { id: tokenId },
    }),
  },
  auditEvents: {
    policy: 'audit:read',
    byId: false,
    doc: () => ({ query: `{ auditEvents { edges { node { id } } } }` }),
  },
  verifyAuditChain: {
    policy: 'audit:read',
    byId: false,
    doc: () => ({ query: `{ verifyAuditChain { ok } }` }),
  },
  fleetUtilization: {
    policy: 'telemetry:read',
    requires: 'agents:read',
    byId: false,
    doc: () => ({ query: `{ fleetUtilization { gpusTotal } }` }),
  },
  agentTelemetry: {
    policy: 'telemetry:read',
    requires: 'agents:read',
    byId: true,
    doc: ({ agentId }) => ({
      query: `query($id: ID!, $r: TelemetryRangeInput!) { agentTelemetry(agentId: $id, range: $r) { agentId } }`,
      variables: { id: agentId, r: TELEMETRY_RANGE },
    }),
  },
  jobTelemetry: {
    policy: 'telemetry:read',
    byId: true,
    project: 'hidden',
    doc: ({ jobId }) => ({
      query: `query($id: ID!, $r: TelemetryRangeInput!) { jobTelemetry(jobId: $id, range: $r) { id } }`,
      variables: { id: jobId, r: TELEMETRY_RANGE },
    }),
  },
  projectTelemetry: {
    policy: 'telemetry:read',
    byId: true,
    project: 'hidden',
    doc: ({ projectId }) => ({
      query: `query($id: ID!, $r: TelemetryRangeInput!) { projectTelemetry(projectId: $id, range: $r) { id } }`,
      variables: { id: projectId, r: TELEMETRY_RANGE },
    }),
  },
  usageReport: {
    policy: 'telemetry:read',
    byId: false,
    doc: () => ({
      query: `query($f: DateTime!, $t: DateTime!) { usageReport(from: $f, to: $t) { currency } }`,
      variables: { f: TELEMETRY_RANGE.from, t: TELEMETRY_RANGE.to },
    }),
  },
  usageReportCsv: {
    policy: 'telemetry:read',
    byId: false,
    doc: () => ({
      query: `query($f: DateTime!, $t: DateTime!) { usageReportCsv(from: $f, to: $t) }`,
      variables: { f: TELEMETRY_RANGE.from, t: TELEMETRY_RANGE.to },
    }),
  },
  telemetrySettings: {
    policy: 'telemetry:read',
    byId: false,
    doc: () => ({ query: `{ telemetrySettings { currency } }` }),
  },
  idleAlerts: { policy: 'telemetry:read', byId: false, doc: () => ({ query: `{ idleAlerts { id } }` }) },
  updateTelemetrySettings: {
    policy: 'telemetry:manage',
    byId: false,
    doc: () => ({
      query: `mutation { updateTelemetrySettings(input: { idleWindowMinutes: 30 }) { currency } }`,
    }),
  },
  setGpuPrice: {
    policy: 'telemetry:manage',
    byId: false,
    doc: () => ({
      query: `mutation { setGpuPrice(input: { model: "NVIDIA H100 80GB HBM3", pricePerGpuHour: 2 }) { currency } }`,
    }),
  },
  myPermissions: { policy: 'authenticated', byId: false, doc: () => ({ query: `{ myPermissions }` }) },
  models: { policy: 'models:read', byId: false, doc: () => ({ query: `{ models { id versions { id } } }` }) },
  model: {
    policy: 'models:read',
    byId: true,
    project: 'hidden',
    doc: ({ modelId }) => ({
      query: `query($id: ID!) { model(id: $id) { id } }`,
      variables: { id: modelId },
    }),
  },
  modelVersion: {
    policy: 'models:read',
    byId: true,
    project: 'hidden',
    doc: ({ versionId }) => ({
      query: `query($id: ID!) { modelVersion(id: $id) { id } }`,
      variables: { id: versionId },
    }),
  },
  registerModelVersion: {
    policy: 'models:register',
    byId: true,
    project: 'refused',
    doc: ({ projectId }) => ({
      query: `mutation($n: String!, $p: ID) { registerModelVersion(input: { modelName: $n, projectId: $p,
        uri: "file:///models/m.onnx", sha256: "${'a'.repeat(64)}", sizeBytes: 100 }) { id } }`,
      variables: { n: unique('model'), p: projectId },
    }),
  },
  transitionModelVersionStage: {
    policy: 'models:promote',
    byId: true,
    project: 'hidden',
    doc: ({ versionId }) => ({
      query: `mutation($id: ID!) { transitionModelVersionStage(versionId: $id, stage: STAGING) { id } }`,
      variables: { id: versionId },
    }),
  },
  deployModel: {
    policy: 'models:deploy',
    byId: true,
    project: 'hidden',
    doc: ({ versionId }) => ({
      query: `mutation($id: ID!) { deployModel(input: { versionId: $id }) { id } }`,
      variables: { id: versionId },
    }),
  },
  undeployModel: {
    policy: 'models:deploy',
    byId: true,
    project: 'hidden',
    doc: ({ deploymentId }) => ({
      query: `mutation($id: ID!) { undeployModel(id: $id) { id } }`,
      variables: { id: deploymentId },
    }),
  },
  deployments: { policy: 'models:read', byId: false, doc: () => ({ query: `{ deployments { id state } }` }) },
  deployment: {
    policy: 'models:read',
    byId: true,
    project: 'hidden',
    doc: ({ deploymentId }) => ({
      query: `query($id: ID!) { deployment(id: $id) { id } }`,
      variables: { id: deploymentId },
    }),
  },
};

type Scope = 'organization' | 'project';
type Context = 'ownProject' | 'otherProject' | 'otherOrganization';
const CONTEXTS: Context[] = ['ownProject', 'otherProject', 'otherOrganization'];

let db: TestDatabase;
let cp: ControlPlane;
let ownerA: GraphQLClient;
let ownerB: GraphQLClient;
const clients = { organization: {}, project: {} } as Record<Scope, Record<RoleName, GraphQLClient>>;
const ids = {} as Record<Context, Ids>;
const orgOf = (c: Context) => (c === 'otherOrganization' ? ownerB : ownerA);

/** Objects of one organization for the matrix to act on; the job lives in the given project. */
async function fixtures(owner: GraphQLClient, projectId: string): Promise<Ids> {
  const { submitJob } = await owner.ok<{ submitJob: { id: string } }>(
    `mutation($p: ID) { submitJob(input: { kind: COMMAND, command: ["true"], projectId: $p,
      agentSelector: { labels: [{ key: "pool", value: "none" }] } }) { id } }`,
    { p: projectId },
  );
  const { createJoinToken } = await owner.ok<{ createJoinToken: { token: string } }>(
    `mutation { createJoinToken { token } }`,
  );
  const agent = await joinAgent(cp.url, createJoinToken.token);
  const { registerModelVersion } = await owner.ok<{ registerModelVersion: { id: string; modelId: string } }>(
    `mutation($n: String!, $p: ID) { registerModelVersion(input: { modelName: $n, projectId: $p,
      uri: "file:///models/fixture.onnx", sha256: "${'b'.repeat(64)}", sizeBytes: 100 }) { id modelId } }`,
    { n: unique('fixture'), p: projectId },
  );
  const { deployModel } = await owner.ok<{ deployModel: { id: string } }>(
    `mutation($id: ID!) { deployModel(input: { versionId: $id, agentSelector: { labels: [{ key: "pool", value: "none" }] } }) { id } }`,
    { id: registerModelVersion.id },
  );
  return {
    ...(await destructibles(owner)),
    jobId: submitJob.id,
    agentId: agent.id!,
    projectId,
    modelId: registerModelVersion.modelId,
    versionId: registerModelVersion.id,
    deploymentId: deployModel.id,
  };
}

/** The objects destructive operations consume: made afresh for each call. */
async function destructibles(
  owner: GraphQLClient,
): Promise<Omit<Ids, 'jobId' | 'agentId' | 'projectId' | 'modelId' | 'versionId' | 'deploymentId'>> {
  const { inviteMember } = await owner.ok<{
    inviteMember: { member: { id: string; roleBindings: { id: string }[] } };
  }>(
    `mutation($e: String!) { inviteMember(input: { email: $e, role: "viewer" }) { member { id roleBindings { id } } } }`,
    {
      e: `${unique('target')}@matrix.test`,
    },
  );
  const { createServiceAccount } = await owner.ok<{ createServiceAccount: { id: string } }>(
    `mutation($n: String!) { createServiceAccount(input: { name: $n }) { id } }`,
    { n: unique('target-sa') },
  );
  const { createApiToken } = await owner.ok<{ createApiToken: { apiToken: { id: string } } }>(
    `mutation($id: ID) { createApiToken(input: { name: "target", serviceAccountId: $id }) { apiToken { id } } }`,
    { id: createServiceAccount.id },
  );
  const { createRole } = await owner.ok<{ createRole: { id: string } }>(
    `mutation($n: String!) { createRole(input: { name: $n, permissions: ["jobs:read"] }) { id } }`,
    { n: unique('target-role') },
  );
  return {
    memberId: inviteMember.member.id,
    bindingId: inviteMember.member.roleBindings[0].id,
    serviceAccountId: createServiceAccount.id,
    tokenId: createApiToken.apiToken.id,
    roleId: createRole.id,
  };
}

/** The first error code of a request, or 'OK'. Subscriptions go over graphql-ws. */
async function outcome(client: GraphQLClient, row: Row, context: Context): Promise<string> {
  const target = row.destructive
    ? { ...ids[context], ...(await destructibles(orgOf(context))) }
    : ids[context];
  const { query, variables } = row.doc(target);
  if (query.startsWith('subscription')) {
    const ws = client.ws();
    try {
      await collect(ws, query, variables ?? {}, () => true);
      return 'OK';
    } catch (err) {
      const text = String(err);
      return /permission denied/.test(text) ? 'FORBIDDEN' : /not found/.test(text) ? 'NOT_FOUND' : text;
    } finally {
      await ws.dispose();
    }
  }
  const r = await client.request(query, variables);
  return r.errors?.[0]?.extensions?.code ?? 'OK';
}

/** What a role bound at a scope must get for a row in a context. */
function expected(role: RoleName, scope: Scope, context: Context, row: Row): string {
  const held = scope === 'organization' ? ROLES[role] : ROLES[role].filter(isProjectPermission);
  const has = (p: Policy) => p === 'authenticated' || held.includes(p);
  if (!has(row.policy)) return 'FORBIDDEN';
  if (context === 'otherOrganization' && row.byId) return 'NOT_FOUND';
  // An operation that names nothing acts the same whichever organization the fixtures are in.
  if (!has(row.requires ?? row.policy)) return 'FORBIDDEN';
  if (context === 'otherOrganization') return 'OK';
  if (scope === 'project' && context === 'otherProject' && row.project && row.byId)
    return row.project === 'hidden' ? 'NOT_FOUND' : 'FORBIDDEN';
  return 'OK';
}

async function addUser(orgId: string, email: string, role: string): Promise<GraphQLClient> {
  const r = await runProcess(
    process.execPath,
    [HEARTH_BIN, 'org', 'add-user', '--org', orgId, '--email', email, '--role', role, '--json'],
    { DATABASE_URL: db.appUrl },
  );
  if (r.code !== 0) throw new Error(r.stderr);
  return new GraphQLClient(cp.graphqlUrl, (JSON.parse(r.stdout) as { token: string }).token);
}

async function inviteAndAccept(owner: GraphQLClient, email: string, role: string, projectId: string) {
  const { inviteMember } = await owner.ok<{ inviteMember: { token: string } }>(
    `mutation($e: String!, $r: String!, $p: ID) { inviteMember(input: { email: $e, role: $r, projectId: $p }) { token } }`,
    { e: email, r: role, p: projectId },
  );
  const res = await fetch(`${cp.url}/api/v1/invitations/accept`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: inviteMember.token }),
  });
  return new GraphQLClient(cp.graphqlUrl, ((await res.json()) as { token: string }).token);
}

beforeAll(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL: SHARED_NATS_URL });
  const a = await createOrganization(db.appUrl, 'Matrix A');
  const b = await createOrganization(db.appUrl, 'Matrix B');
  ownerA = new GraphQLClient(cp.graphqlUrl, a.adminToken);
  ownerB = new GraphQLClient(cp.graphqlUrl, b.adminToken);
  const project = async (owner: GraphQLClient, name: string) =>
    (
      await owner.ok<{ createProject: { id: string } }>(
        `mutation($n: String!) { createProject(input: { name: $n }) { id } }`,
        { n: name },
      )
    ).createProject.id;
  const [p1, p2, pb] = [
    await project(ownerA, 'own'),
    await project(ownerA, 'other'),
    await project(ownerB, 'theirs'),
  ];
  clients.organization.owner = ownerA;
  for (const role of ROLE_NAMES.filter((r) => r !== 'owner'))
    clients.organization[role] = await addUser(a.organizationId, `${role}@a.test`, role);
  for (const role of ROLE_NAMES)
    clients.project[role] = await inviteAndAccept(ownerA, `${role}.p1@a.test`, role, p1);
  ids.ownProject = await fixtures(ownerA, p1);
  ids.otherProject = await fixtures(ownerA, p2);
  ids.otherOrganization = await fixtures(ownerB, pb);
});

afterAll(async () => {
  await cp?.stop();
  await db?.drop();
});

describe('authorization matrix', () => {
  it('has a row for every operation in the schema, and no row for one that is gone', async () => {
    const { __schema } = await ownerA.ok<{
      __schema: Record<string, { fields: { name: string }[] } | null>;
    }>(
      `{ __schema { queryType { fields { name } } mutationType { fields { name } } subscriptionType { fields { name } } } }`,
    );
    const ops = Object.values(__schema).flatMap((t) => t?.fields.map((f) => f.name) ?? []);
    expect(ops.sort()).toEqual(Object.keys(MATRIX).sort());
  });

  for (const scope of ['organization', 'project'] as const) {
    for (const role of ROLE_NAMES) {
      it(`${role} bound ${scope === 'organization' ? 'organization-wide' : 'in one project'}: allowed exactly what the binding grants`, async () => {
        const seen: Record<string, string[]> = {};
        const want: Record<string, string[]> = {};
        for (const [op, row] of Object.entries(MATRIX)) {
          seen[op] = [];
          for (const context of CONTEXTS) seen[op].push(await outcome(clients[scope][role], row, context));
          want[op] = CONTEXTS.map((context) => expected(role, scope, context, row));
        }
        expect(seen).toEqual(want);
      });
    }
  }

  it('answers myPermissions with exactly what the guard allows, for every role and scope', async () => {
    for (const role of ROLE_NAMES) {
      const { myPermissions } = await clients.organization[role].ok<{ myPermissions: string[] }>(
        `{ myPermissions }`,
      );
      expect({ role, perms: [...myPermissions].sort() }).toEqual({ role, perms: [...ROLES[role]].sort() });
      const inProject = await clients.project[role].ok<{ myPermissions: string[] }>(`{ myPermissions }`);
      expect({ role, perms: [...inProject.myPermissions].sort() }).toEqual({
        role,
        perms: ROLES[role].filter(isProjectPermission).sort(),
      });
    }
  });

  it('takes a project id written in capitals as the same project, for a project-bound role', async () => {
    const upper = ids.ownProject.projectId.toUpperCase();
    const { submitJob } = await clients.project.ml_engineer.ok<{ submitJob: { projectId: string } }>(
      `mutation($p: ID) { submitJob(input: { kind: COMMAND, command: ["true"], projectId: $p,
        agentSelector: { labels: [{ key: "pool", value: "none" }] } }) { projectId } }`,
      { p: upper },
    );
    expect(submitJob.projectId).toBe(ids.ownProject.projectId);
    const { jobs } = await clients.project.ml_engineer.ok<{
      jobs: { edges: { node: { projectId: string } }[] };
    }>(`query($p: ID) { jobs(first: 50, filter: { projectId: $p }) { edges { node { projectId } } } }`, {
      p: upper,
    });
    expect(jobs.edges.length).toBeGreaterThan(0);
    expect(new Set(jobs.edges.map((e) => e.node.projectId))).toEqual(new Set([ids.ownProject.projectId]));
    // Still only that project: another one's id in capitals is refused as before.
    expect(
      (
        await clients.project.ml_engineer.request(
          `mutation($p: ID) { submitJob(input: { kind: COMMAND, command: ["true"], projectId: $p }) { id } }`,
          { p: ids.otherProject.projectId.toUpperCase() },
        )
      ).errors?.[0]?.extensions?.code,
    ).toBe('FORBIDDEN');
  });

  it('audits every denial, the guard’s and the services’', async () => {
    const since = new Date(Date.now() - 1).toISOString();
    expect(await outcome(clients.organization.viewer, MATRIX.submitJob, 'ownProject')).toBe('FORBIDDEN');
    expect(await outcome(clients.project.ml_engineer, MATRIX.submitJob, 'otherProject')).toBe('FORBIDDEN');
    const { auditEvents } = await clients.organization.auditor.ok<{
      auditEvents: { edges: { node: { action: string; outcome: string; changes: string } }[] };
    }>(
      `query($since: DateTime) { auditEvents(first: 10, filter: { actions: ["permission.denied"], since: $since }) {
        edges { node { action outcome changes } } } }`,
      { since },
    );
    expect(auditEvents.edges.map((e) => e.node.outcome)).toEqual(['denied', 'denied']);
    expect(auditEvents.edges.map((e) => JSON.parse(e.node.changes) as Record<string, unknown>)).toEqual([
      expect.objectContaining({
        operation: 'submitJob',
        reason: 'permission denied: this operation requires jobs:submit in that project',
        roles: ['ml_engineer'],
      }),
      expect.objectContaining({ operation: 'submitJob', required: 'jobs:submit', roles: ['viewer'] }),
    ]);
  });

  it('refuses an unknown role at the CLI with the list of roles', async () => {
    const r = await runProcess(
      process.execPath,
      [
        HEARTH_BIN,
        'org',
        'add-user',
        '--org',
        ids.ownProject.jobId,
        '--email',
        'x@a.test',
        '--role',
        'superuser',
      ],
      { DATABASE_URL: db.appUrl },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'unknown role superuser; one of: owner, admin, ml_engineer, viewer, auditor, fleet_operator',
    );
  });
});

describe('IDOR', () => {
  /** Everything organization B can see of itself, including the length of its audit chain. */
  async function snapshotOfB() {
    return ownerB.ok(`{
      jobs(first: 200) { edges { node { id state stateReason } } }
      agents { id state }
      projects { id name description }
      members(includeRemoved: true) { id status roleBindings { id role projectId } }
      serviceAccounts { id status roleBindings { id role } }
      roles { id name description permissions }
      apiTokens { id revokedAt expiresAt }
      models { id name versions { id stage } }
      deployments(includeStopped: true) { id state stoppedAt version { id } }
      verifyAuditChain { ok checked }
    }`);
  }

  it('answers NOT_FOUND to every operation given another organization’s ids, and changes nothing there', async () => {
    const theirs = { ...ids.otherOrganization, ...(await destructibles(ownerB)) };
    const before = await snapshotOfB();
    const seen: Record<string, string> = {};
    for (const [op, row] of Object.entries(MATRIX).filter(([, r]) => r.byId)) {
      const { query, variables } = row.doc(theirs);
      if (query.startsWith('subscription')) {
        seen[op] = await outcome(ownerA, row, 'otherOrganization');
        continue;
      }
      const r = await ownerA.request(query, variables);
      seen[op] = r.errors?.[0]?.extensions?.code ?? 'OK';
    }
    expect(Object.values(seen).length).toBeGreaterThanOrEqual(15);
    expect(seen).toEqual(Object.fromEntries(Object.keys(seen).map((op) => [op, 'NOT_FOUND'])));
    expect(await snapshotOfB()).toEqual(before);
  });
});
