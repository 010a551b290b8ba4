/**
 * Bad input at the API's edges: whatever a client sends, it gets a clear error with a stable code,
 * nothing is written, the server logs no unexpected error, and it goes on serving. Each case here
 * once came back as INTERNAL_SERVER_ERROR (found by probing every operation of the schema).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createUser } from '@nats-io/nkeys';
import {
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  query,
  startControlPlane,
  type ControlPlane,
  type TestDatabase,
  SHARED_NATS_URL,
} from '@hearth/testing';

let db: TestDatabase;
let cp: ControlPlane;
let admin: GraphQLClient;
let other: GraphQLClient;

beforeAll(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({ DATABASE_URL: db.appUrl, NATS_URL: SHARED_NATS_URL });
  admin = new GraphQLClient(cp.graphqlUrl, (await createOrganization(db.appUrl, 'Acme')).adminToken);
  other = new GraphQLClient(cp.graphqlUrl, (await createOrganization(db.appUrl, 'Other')).adminToken);
});

afterAll(async () => {
  await cp?.stop();
  await db?.drop();
});

/** Rows in every table of the schema, by table: what a refused request must leave unchanged. */
async function rowCounts(): Promise<Record<string, number>> {
  const tables = await query<{ t: string }>(
    db.adminUrl,
    `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
  );
  const counts: Record<string, number> = {};
  for (const { t } of tables)
    counts[t] = Number((await query<{ n: string }>(db.adminUrl, `SELECT count(*) AS n FROM "${t}"`))[0].n);
  return counts;
}

/** The control plane's log lines that report an unexpected error (a bug, not bad input). */
const unexpectedErrors = () => cp.proc.lines.filter((l) => l.includes('"unexpected error"'));

/**
 * Sends each request and expects the given code on every one; then checks that no row was written,
 * no unexpected error was logged and the server still answers.
 */
async function expectRefused(
  code: string,
  requests: [string, Record<string, unknown>?][],
  client = admin,
): Promise<{ status: number; message: string }[]> {
  const before = await rowCounts();
  const logged = unexpectedErrors().length;
  const seen: { status: number; message: string; code?: string; query: string }[] = [];
  for (const [q, variables] of requests) {
    const r = await client.request(q, variables);
    const e = r.errors?.[0];
    seen.push({ status: r.status, message: e?.message ?? '(no error)', code: e?.extensions?.code, query: q });
  }
  expect(seen.filter((s) => s.code !== code)).toEqual([]);
  expect(unexpectedErrors().slice(logged)).toEqual([]);
  expect(await rowCounts()).toEqual(before);
  expect((await fetch(`${cp.url}/healthz`)).status).toBe(200);
  return seen;
}

describe('strings Postgres cannot store', () => {
  const NUL = 'a\u0000b';
  const LONE = 'a\ud800b';

  it('refuses a NUL character or an unpaired surrogate in any string, literal or variable', async () => {
    const seen = await expectRefused('BAD_USER_INPUT', [
      [`mutation { createProject(input: { name: "a\\u0000b" }) { id } }`],
      [`mutation($n: String!) { createProject(input: { name: $n }) { id } }`, { n: LONE }],
      [
        `mutation($c: [String!]!) { submitJob(input: { kind: COMMAND, command: $c }) { id } }`,
        { c: ['echo', NUL] },
      ],
      [
        `mutation($v: String!) { submitJob(input: { kind: COMMAND, command: ["echo"], env: [{ name: "X", value: $v }] }) { id } }`,
        { v: LONE },
      ],
      [
        `mutation($e: String!) { inviteMember(input: { email: $e, role: "viewer" }) { token } }`,
        { e: '\ud800@x.test' },
      ],
      [
        `mutation($d: String!) { createServiceAccount(input: { name: "ci", description: $d }) { id } }`,
        { d: NUL },
      ],
      [`mutation { createApiToken(input: { name: "a\\u0000" }) { token } }`],
      [`query($a: [String!]) { auditEvents(filter: { actions: $a }) { edges { cursor } } }`, { a: [NUL] }],
    ]);
    expect(seen[0].message).toBe(
      'a string argument (line 1, column 41) must not contain NUL characters or unpaired surrogates',
    );
    expect(seen[1].message).toBe('variable $n must not contain NUL characters or unpaired surrogates');
  });

  it('keeps text with supplementary characters (paired surrogates) intact', async () => {
    const r = await admin.ok<{ createProject: { name: string } }>(
      `mutation($n: String!) { createProject(input: { name: $n }) { name } }`,
      { n: 'Forecasts 📈' },
    );
    expect(r.createProject.name).toBe('Forecasts 📈');
  });
});

describe('arguments each operation must check', () => {
  it('validates the filters of jobs and auditEvents', async () => {
    const seen = await expectRefused('BAD_USER_INPUT', [
      [`{ jobs(filter: { agentId: "not-a-uuid" }) { edges { cursor } } }`],
      [`{ jobs(filter: { projectId: "" }) { edges { cursor } } }`],
      [
        `query($s: [JobState!]) { jobs(filter: { states: $s }) { edges { cursor } } }`,
        { s: Array(5000).fill('QUEUED') },
      ],
      [`{ auditEvents(filter: { actions: ["bogus"] }) { edges { cursor } } }`],
      [`{ auditEvents(filter: { actorId: "x" }) { edges { cursor } } }`],
    ]);
    expect(seen[3].message).toMatch(/^actions must be audit actions/);
  });

  it('refuses a name that is only spaces, and a custom role named like a built-in one', async () => {
    const blank = await expectRefused('BAD_USER_INPUT', [
      [`mutation { createProject(input: { name: "   " }) { id } }`],
      [`mutation { createServiceAccount(input: { name: " \\t " }) { id } }`],
      [`mutation { createApiToken(input: { name: "  " }) { token } }`],
      [`mutation { setGpuPrice(input: { model: "   ", pricePerGpuHour: 1 }) { currency } }`],
    ]);
    expect(blank[0].message).toBe('name must be 1 to 100 characters');
    const [builtIn] = await expectRefused('CONFLICT', [
      [`mutation { createRole(input: { name: "admin", permissions: ["jobs:read"] }) { id } }`],
    ]);
    expect(builtIn.message).toBe('admin is a built-in role; give the custom role another name');
    // Trimmed, not refused, when there is a name inside the spaces.
    const ok = await admin.ok<{ createProject: { name: string } }>(
      `mutation { createProject(input: { name: "  Churn  " }) { name } }`,
    );
    expect(ok.createProject.name).toBe('Churn');
  });

  it('answers an empty id as bad input or not found, never as an internal error', async () => {
    const seen = await expectRefused('BAD_USER_INPUT', [
      [`mutation { submitJob(input: { kind: COMMAND, command: ["x"], projectId: "" }) { id } }`],
      [`mutation { createApiToken(input: { name: "t", projectId: "" }) { token } }`],
      [`mutation { inviteMember(input: { email: "e@x.test", role: "viewer", projectId: "" }) { token } }`],
      [
        `mutation { registerModelVersion(input: { modelName: "m", uri: "file:///m.onnx", sha256: "${'a'.repeat(64)}", sizeBytes: 1, jobId: "" }) { id } }`,
      ],
    ]);
    expect(seen[0].message).toBe('projectId must not be empty: leave it out instead');
    await expectRefused('NOT_FOUND', [
      [`{ models(projectId: "") { id } }`],
      [`{ job(id: "${'x'.repeat(5000)}") { id } }`],
    ]);
    const long = await admin.request(`{ job(id: "${'x'.repeat(5000)}") { id } }`);
    expect(long.errors?.[0].message.length).toBeLessThan(120); // the id is not echoed whole
  });

  it('refuses at submit a job whose dispatch would be too large for an agent to accept', async () => {
    // Each argument is within its own bound (4096 characters); together they are over 64 KiB.
    const [big] = await expectRefused('BAD_USER_INPUT', [
      [
        `mutation($c: [String!]!) { submitJob(input: { kind: COMMAND, command: $c }) { id } }`,
        { c: Array(20).fill('a'.repeat(4096)) },
      ],
    ]);
    expect(big.message).toMatch(
      /^the job is too large to send to an agent: command, env and spec take \d+ bytes, at most 65536$/,
    );
  });

  it('refuses a job with no program, or an env name or selector label given twice', async () => {
    const submit = `mutation($i: SubmitJobInput!) { submitJob(input: $i) { id } }`;
    const seen = await expectRefused('BAD_USER_INPUT', [
      [submit, { i: { kind: 'COMMAND', command: ['', 'arg'] } }],
      [submit, { i: { kind: 'COMMAND', command: ['  '] } }],
      [
        submit,
        {
          i: {
            kind: 'COMMAND',
            command: ['env'],
            env: [
              { name: 'A', value: '1' },
              { name: 'A', value: '2' },
            ],
          },
        },
      ],
      [
        submit,
        {
          i: {
            kind: 'COMMAND',
            command: ['true'],
            agentSelector: {
              labels: [
                { key: 'zone', value: 'a' },
                { key: 'zone', value: 'b' },
              ],
            },
          },
        },
      ],
    ]);
    expect(seen.map((s) => s.message)).toEqual([
      'command[0] must name a program',
      'command[0] must name a program',
      expect.stringContaining('env names must be unique'),
      expect.stringContaining('agentSelector label keys must be unique'),
    ]);
    // An empty argument after the program is the user's to pass.
    const ok = await admin.request(
      `mutation { submitJob(input: { kind: COMMAND, command: ["echo", ""] }) { id } }`,
    );
    expect(ok.errors).toBeUndefined();
  });

  it('refuses a model file size that is not a whole number of bytes', async () => {
    const [seen] = await expectRefused('BAD_USER_INPUT', [
      [
        `mutation { registerModelVersion(input: { modelName: "m", uri: "file:///a/m.onnx", sha256: "${'a'.repeat(64)}", sizeBytes: 1.5 }) { id } }`,
      ],
    ]);
    expect(seen.message).toContain('sizeBytes must be a whole number of bytes');
  });

  it('takes DateTime values only as RFC 3339 strings that Postgres can store', async () => {
    const seen = await expectRefused('GRAPHQL_VALIDATION_FAILED', [
      [`{ usageReport(from: 5, to: "2026-11-21T00:00:00Z") { currency } }`],
      [`{ usageReport(from: "-010000-01-01T00:00:00Z", to: "2026-11-21T00:00:00Z") { currency } }`],
      [`{ auditEvents(filter: { since: "yesterday" }) { edges { cursor } } }`],
      [`query($t: DateTime) { auditEvents(filter: { since: $t }) { edges { cursor } } }`, { t: 0 }],
      [
        `query($t: DateTime) { auditEvents(filter: { since: $t }) { edges { cursor } } }`,
        { t: '2026-02-30T00:00:00Z' },
      ],
    ]);
    expect(seen[0]).toMatchObject({
      status: 400,
      message: expect.stringContaining(
        'DateTime must be an RFC 3339 date-time string, got a IntValue literal',
      ),
    });
    // A variable's message comes from graphql-jit once the query is compiled: it names the variable and type.
    expect(seen[4].message).toMatch(/"\$t" got invalid value "2026-02-30T00:00:00Z"; .*DateTime/);
    const r = await admin.ok<{ auditEvents: { edges: { node: { occurredAt: string } }[] } }>(
      `query($t: DateTime) { auditEvents(first: 1, filter: { since: $t }) { edges { node { occurredAt } } } }`,
      { t: '2020-01-01T01:00:00+01:00' },
    );
    expect(r.auditEvents.edges[0].node.occurredAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('refuses an auditEvents cursor it did not return, instead of an empty page', async () => {
    const cursor = (s: string) => Buffer.from(s).toString('base64url');
    await expectRefused('BAD_USER_INPUT', [
      [`{ auditEvents(after: "x") { edges { cursor } } }`],
      [`{ auditEvents(after: "") { edges { cursor } } }`],
      [`{ auditEvents(after: "${cursor('audit:1e21')}") { edges { cursor } } }`],
      [`{ auditEvents(after: "${cursor('audit:99999999999999999999')}") { edges { cursor } } }`],
    ]);
    const page = await admin.ok<{
      auditEvents: { edges: { cursor: string }[]; pageInfo: { hasNextPage: boolean } };
    }>(`{ auditEvents(first: 1) { edges { cursor } pageInfo { hasNextPage } } }`);
    const next = await admin.ok<{ auditEvents: { edges: { cursor: string }[] } }>(
      `query($a: String) { auditEvents(first: 1, after: $a) { edges { cursor } } }`,
      { a: page.auditEvents.edges[0].cursor },
    );
    expect(next.auditEvents.edges).toHaveLength(1);
  });
});

describe('requests refused before GraphQL runs', () => {
  const post = (body: string, contentType = 'application/json') =>
    fetch(cp.graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': contentType, authorization: `Bearer ${admin.token}` },
      body,
    });

  it('answers a body that is not a GraphQL request with 400 or 413 and BAD_REQUEST', async () => {
    const logged = unexpectedErrors().length;
    const cases: [string, number][] = [
      ['{not json', 400],
      ['', 400],
      ['{}', 400],
      [JSON.stringify({ query: '{ myPermissions }', padding: 'x'.repeat(1_100_000) }), 413],
    ];
    for (const [body, status] of cases) {
      const res = await post(body);
      expect({ body: body.slice(0, 20), status: res.status }).toEqual({ body: body.slice(0, 20), status });
      const json = (await res.json()) as { errors: { message: string; extensions: { code: string } }[] };
      expect(json.errors[0].extensions.code).toBe('BAD_REQUEST');
      expect(json.errors[0].message).not.toMatch(/internal error/);
    }
    expect(unexpectedErrors().slice(logged)).toEqual([]);
  });

  it('answers the REST endpoints in their own error shape', async () => {
    for (const path of ['/api/v1/agents/join', '/api/v1/invitations/accept']) {
      const res = await fetch(`${cp.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{not json',
      });
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('BAD_REQUEST');
      expect(Object.keys(body)).toEqual(['error']);
    }
  });
});

describe('agent enrollment', () => {
  it('refuses a join request with text Postgres cannot store or a key that is not an nkey, and keeps the token', async () => {
    const { createJoinToken } = await admin.ok<{ createJoinToken: { token: string } }>(
      `mutation { createJoinToken(ttlSeconds: 600) { token } }`,
    );
    const system = {
      hostname: 'gpu-1',
      os: 'linux',
      arch: 'x64',
      cpus: 4,
      memoryBytes: 1e9,
      gpus: [],
      agentVersion: '0.1.0',
    };
    const join = (body: Record<string, unknown>) =>
      fetch(`${cp.url}/api/v1/agents/join`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token: createJoinToken.token, labels: {}, system, ...body }),
      });
    const before = await rowCounts();
    const nul = await join({
      publicKey: createUser().getPublicKey(),
      system: { ...system, hostname: 'a\u0000b' },
    });
    expect(nul.status).toBe(400);
    expect(await nul.json()).toEqual({
      error: {
        code: 'BAD_USER_INPUT',
        message:
          'invalid join request: system.hostname: must not contain NUL characters or unpaired surrogates',
      },
    });
    const badKey = await join({ publicKey: `U${'A'.repeat(55)}` }); // the right shape, a wrong checksum
    expect(badKey.status).toBe(400);
    expect(await badKey.json()).toMatchObject({
      error: { message: 'invalid join request: publicKey: not a valid nkey user public key' },
    });
    expect(await rowCounts()).toEqual(before);
    const ok = await join({ publicKey: createUser().getPublicKey() });
    expect(ok.status).toBe(201); // the token was not used up by the refused requests
  });
});

describe('subscriptions', () => {
  it('sends a subscription error with its code, like any other error', async () => {
    const { submitJob } = await other.ok<{ submitJob: { id: string } }>(
      `mutation { submitJob(input: { kind: COMMAND, command: ["true"] }) { id } }`,
    );
    const client = admin.ws();
    try {
      const error = await new Promise<unknown>((resolve) => {
        client.subscribe(
          {
            query: `subscription($id: ID!) { jobUpdated(id: $id) { state } }`,
            variables: { id: submitJob.id },
          },
          { next: resolve, error: resolve, complete: () => resolve('completed') },
        );
      });
      expect(error).toEqual([
        expect.objectContaining({
          message: `job ${submitJob.id} not found`,
          extensions: { code: 'NOT_FOUND' },
        }),
      ]);
    } finally {
      await client.dispose();
    }
  });
});
