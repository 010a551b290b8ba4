/**
 * The authorization matrix: every GraphQL operation has a declared policy and a row here, checked for
 * every built-in role against its own organization and another one. A new operation without a row
 * fails this test. myPermissions must agree with what the guard lets through, and denials are audited.
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
} from '@hearth/testing';
import { ROLE_NAMES, ROLES, type Permission, type RoleName } from '../src/platform/access/permissions.js';

interface Ids {
  jobId: string;
  agentId: string;
}
interface Row {
  policy: Permission | 'authenticated';
  /** The request, given the ids it should act on. */
  doc: (ids: Ids) => { query: string; variables?: Record<string, unknown> };
  /** Whether the operation names an object by id (then another organization's id must be NOT_FOUND). */
  byId: boolean;
}

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
    byId: false,
    doc: () => ({ query: `mutation { submitJob(input: { kind: COMMAND, command: ["true"] }) { id } }` }),
  },
  cancelJob: {
    policy: 'jobs:cancel',
    byId: true,
    doc: ({ jobId }) => ({
      query: `mutation($id: ID!) { cancelJob(id: $id) { id } }`,
      variables: { id: jobId },
    }),
  },
  job: {
    policy: 'jobs:read',
    byId: true,
    doc: ({ jobId }) => ({ query: `query($id: ID!) { job(id: $id) { id } }`, variables: { id: jobId } }),
  },
  jobs: { policy: 'jobs:read', byId: false, doc: () => ({ query: `{ jobs { edges { node { id } } } }` }) },
  jobUpdated: {
    policy: 'jobs:read',
    byId: true,
    doc: ({ jobId }) => ({
      query: `subscription($id: ID!) { jobUpdated(id: $id) { id } }`,
      variables: { id: jobId },
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
  myPermissions: { policy: 'authenticated', byId: false, doc: () => ({ query: `{ myPermissions }` }) },
};

let db: TestDatabase;
let cp: ControlPlane;
const clients = {} as Record<RoleName, GraphQLClient>;
let own: Ids;
let other: Ids;

async function idsFor(api: GraphQLClient): Promise<Ids> {
  const { submitJob } = await api.ok<{ submitJob: { id: string } }>(
    `mutation { submitJob(input: { kind: COMMAND, command: ["true"], agentSelector: { labels: [{ key: "pool", value: "none" }] } }) { id } }`,
  );
  const { createJoinToken } = await api.ok<{ createJoinToken: { token: string } }>(
    `mutation { createJoinToken { token } }`,
  );
  const joined = await joinAgent(cp.url, createJoinToken.token);
  return { jobId: submitJob.id, agentId: joined.id! };
}

/** The first error code of a request, or 'OK'. Subscriptions go over graphql-ws. */
async function outcome(client: GraphQLClient, op: string, ids: Ids): Promise<string> {
  const { query, variables } = MATRIX[op].doc(ids);
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

beforeAll(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL: 'nats://127.0.0.1:4222' });
  const a = await createOrganization(db.appUrl, 'Matrix A');
  const b = await createOrganization(db.appUrl, 'Matrix B');
  clients.owner = new GraphQLClient(cp.graphqlUrl, a.adminToken);
  for (const role of ROLE_NAMES.filter((r) => r !== 'owner')) {
    const r = await runProcess(
      process.execPath,
      [
        HEARTH_BIN,
        'org',
        'add-user',
        '--org',
        a.organizationId,
        '--email',
        `${role}@a.test`,
        '--role',
        role,
        '--json',
      ],
      {
        DATABASE_URL: db.appUrl,
      },
    );
    if (r.code !== 0) throw new Error(r.stderr);
    clients[role] = new GraphQLClient(cp.graphqlUrl, (JSON.parse(r.stdout) as { token: string }).token);
  }
  own = await idsFor(clients.owner);
  other = await idsFor(new GraphQLClient(cp.graphqlUrl, b.adminToken));
});

afterAll(async () => {
  await cp?.stop();
  await db?.drop();
});

describe('authorization matrix', () => {
  it('has a row for every operation in the schema, and no row for one that is gone', async () => {
    const { __schema } = await clients.owner.ok<{
      __schema: Record<string, { fields: { name: string }[] } | null>;
    }>(
      `{ __schema { queryType { fields { name } } mutationType { fields { name } } subscriptionType { fields { name } } } }`,
    );
    const ops = Object.values(__schema).flatMap((t) => t?.fields.map((f) => f.name) ?? []);
    expect(ops.sort()).toEqual(Object.keys(MATRIX).sort());
  });

  for (const role of ROLE_NAMES) {
    it(`${role}: allowed exactly what the role grants, in its own organization and not in another`, async () => {
      const granted = (p: Row['policy']) => p === 'authenticated' || ROLES[role].includes(p);
      const seen: Record<string, [string, string]> = {};
      const expected: Record<string, [string, string]> = {};
      for (const [op, row] of Object.entries(MATRIX)) {
        seen[op] = [await outcome(clients[role], op, own), await outcome(clients[role], op, other)];
        const ownOutcome = granted(row.policy) ? 'OK' : 'FORBIDDEN';
        const otherOutcome = !granted(row.policy) ? 'FORBIDDEN' : row.byId ? 'NOT_FOUND' : 'OK';
        expected[op] = [ownOutcome, otherOutcome];
      }
      expect(seen).toEqual(expected);
    });
  }

  it('answers myPermissions with exactly what the guard allows, for every role', async () => {
    for (const role of ROLE_NAMES) {
      const { myPermissions } = await clients[role].ok<{ myPermissions: string[] }>(`{ myPermissions }`);
      expect({ role, perms: [...myPermissions].sort() }).toEqual({ role, perms: [...ROLES[role]].sort() });
    }
  });

  it('audits every denial', async () => {
    const before = await clients.auditor.ok<{
      auditEvents: { edges: { node: { action: string; changes: string } }[] };
    }>(`{ auditEvents(first: 500) { edges { node { action changes } } } }`);
    expect(await outcome(clients.viewer, 'submitJob', own)).toBe('FORBIDDEN');
    const after = await clients.auditor.ok<{
      auditEvents: { edges: { node: { action: string; outcome: string; changes: string } }[] };
    }>(`{ auditEvents(first: 500) { edges { node { action outcome changes } } } }`);
    expect(after.auditEvents.edges.length).toBe(before.auditEvents.edges.length + 1);
    expect(after.auditEvents.edges[0].node).toMatchObject({ action: 'permission.denied', outcome: 'denied' });
    expect(JSON.parse(after.auditEvents.edges[0].node.changes)).toMatchObject({
      operation: 'submitJob',
      required: 'jobs:submit',
      roles: ['viewer'],
    });
  });

  it('refuses an unknown role at the CLI with the list of roles', async () => {
    const r = await runProcess(
      process.execPath,
      [HEARTH_BIN, 'org', 'add-user', '--org', own.jobId, '--email', 'x@a.test', '--role', 'superuser'],
      {
        DATABASE_URL: db.appUrl,
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'unknown role superuser; one of: owner, admin, ml_engineer, viewer, auditor, fleet_operator',
    );
  });
});
