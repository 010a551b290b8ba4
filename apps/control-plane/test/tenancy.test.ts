/**
 * The tenant boundary, proven at two layers: the API (another organization's token sees nothing and
 * gets NOT_FOUND for ids) and Postgres row-level security (the app role without a tenant sees no rows;
 * every tenant table forces RLS; many concurrent requests over a tiny pool never mix tenants).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
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

const SUBMIT = `mutation($c: [String!]!) { submitJob(input: { kind: COMMAND, command: $c }) { id state stateReason } }`;

let db: TestDatabase;
let cp: ControlPlane;
let a: GraphQLClient;
let b: GraphQLClient;
let orgA: string;
let orgB: string;
const jobsA: string[] = [];
const jobsB: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({
    DATABASE_URL: db.appUrl,
    NATS_URL: SHARED_NATS_URL,
    DATABASE_POOL_SIZE: '2',
  });
  const A = await createOrganization(db.appUrl, 'Tenant A');
  const B = await createOrganization(db.appUrl, 'Tenant B');
  [orgA, orgB] = [A.organizationId, B.organizationId];
  a = new GraphQLClient(cp.graphqlUrl, A.adminToken);
  b = new GraphQLClient(cp.graphqlUrl, B.adminToken);
  for (let i = 0; i < 3; i++) {
    jobsA.push((await a.ok<{ submitJob: { id: string } }>(SUBMIT, { c: ['echo', `a${i}`] })).submitJob.id);
    jobsB.push((await b.ok<{ submitJob: { id: string } }>(SUBMIT, { c: ['echo', `b${i}`] })).submitJob.id);
  }
  await a.ok(`mutation { createJoinToken { token } }`);
  await b.ok(`mutation { createJoinToken { token } }`);
  // Projects, custom roles, models, versions and deployments, one of each per tenant.
  for (const [client, name] of [
    [a, 'a'],
    [b, 'b'],
  ] as const) {
    const { createProject } = await client.ok<{ createProject: { id: string } }>(
      `mutation($n: String!) { createProject(input: { name: $n }) { id } }`,
      { n: `project-${name}` },
    );
    await client.ok(
      `mutation($n: String!) { createRole(input: { name: $n, permissions: ["jobs:read"] }) { id } }`,
      {
        n: `role-${name}`,
      },
    );
    const { registerModelVersion } = await client.ok<{ registerModelVersion: { id: string } }>(
      `mutation($n: String!, $p: ID) { registerModelVersion(input: { modelName: $n, projectId: $p,
        uri: "file:///models/m.onnx", sha256: "${'c'.repeat(64)}", sizeBytes: 10 }) { id } }`,
      { n: `model-${name}`, p: createProject.id },
    );
    const { deployModel } = await client.ok<{ deployModel: { jobId: string } }>(
      `mutation($id: ID!) { deployModel(input: { versionId: $id, agentSelector: { labels: [{ key: "pool", value: "none" }] } }) { jobId } }`,
      { id: registerModelVersion.id },
    );
    (name === 'a' ? jobsA : jobsB).push(deployModel.jobId); // its serving job
  }
  // Attempts and outbox rows need an agent; seed one per tenant directly, as an administrator.
  for (const [org, job] of [
    [orgA, jobsA[2]],
    [orgB, jobsB[2]],
  ]) {
    const [agent] = await query<{ id: string }>(
      db.adminUrl,
      `INSERT INTO agents (id, tenant_id, public_key, hostname, os, arch, cpus, memory_bytes, agent_version)
       VALUES (gen_random_uuid(), $1, 'U' || md5(random()::text), 'seeded', 'Linux', 'x64', 1, 1, 'test') RETURNING id`,
      [org],
    );
    await query(
      db.adminUrl,
      `INSERT INTO job_attempts (id, tenant_id, job_id, number, fencing_token, agent_id, state, lease_expires_at)
       VALUES (gen_random_uuid(), $1, $2, 1, 1, $3, 'SUCCEEDED', now())`,
      [org, job, agent.id],
    );
    await query(
      db.adminUrl,
      `INSERT INTO outbox (tenant_id, subject, msg_id, payload) VALUES ($1, 'x', gen_random_uuid()::text, '')`,
      [org],
    );
    await seedTelemetry(org, agent.id, job);
  }
});

/** A row in every telemetry table (partitioned ones are checked through their parent). */
async function seedTelemetry(org: string, agent: string, job: string) {
  const gpuBucket = (t: string) =>
    `INSERT INTO ${t} (tenant_id, agent_id, gpu, bucket, samples, seconds, util_seconds, util_weighted, idle_seconds,
            mem_seconds, mem_weighted, power_seconds, energy_j)
     VALUES ($1, $2, 0, date_trunc('minute', now()), 1, 5, 5, 0, 5, 0, 0, 0, 0)`;
  const hostBucket = (t: string) =>
    `INSERT INTO ${t} (tenant_id, agent_id, bucket, samples, seconds, cpu_seconds, cpu_weighted, mem_seconds,
            mem_weighted, disk_read_bytes, disk_write_bytes, net_rx_bytes, net_tx_bytes, dropped)
     VALUES ($1, $2, date_trunc('minute', now()), 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0)`;
  const statements: [string, unknown[]][] = [
    [`INSERT INTO telemetry_settings (tenant_id) VALUES ($1)`, [org]],
    [
      `INSERT INTO telemetry_gpus (tenant_id, agent_id, gpu, vendor, gpu_index, name) VALUES ($1, $2, 0, 'nvidia', 0, 'x')`,
      [org, agent],
    ],
    [
      `INSERT INTO telemetry_samples (tenant_id, agent_id, at, interval_s) VALUES ($1, $2, now(), 5)`,
      [org, agent],
    ],
    [gpuBucket('telemetry_gpu_1m'), [org, agent]],
    [gpuBucket('telemetry_gpu_1h'), [org, agent]],
    [hostBucket('telemetry_host_1m'), [org, agent]],
    [hostBucket('telemetry_host_1h'), [org, agent]],
    [
      `INSERT INTO telemetry_idle_alerts (id, tenant_id, job_id, gpus, threshold_pct, window_minutes, idle_since,
              raised_at, action) VALUES (gen_random_uuid(), $1, $2, 1, 5, 30, now(), now(), 'NOTIFY')`,
      [org, job],
    ],
  ];
  for (const [sql, params] of statements) await query(db.adminUrl, sql, params);
}

afterAll(async () => {
  await cp?.stop();
  await db?.drop();
});

describe('API tenant isolation', () => {
  it('lists only the caller organization jobs', async () => {
    const list = await b.ok<{ jobs: { edges: { node: { id: string } }[] } }>(
      `{ jobs(first: 100) { edges { node { id } } } }`,
    );
    expect(list.jobs.edges.map((e) => e.node.id).sort()).toEqual([...jobsB].sort());
  });

  it("answers NOT_FOUND for another organization's job, and changes nothing", async () => {
    expect(await b.errorCode(`query($id: ID!) { job(id: $id) { id } }`, { id: jobsA[0] })).toBe('NOT_FOUND');
    expect(await b.errorCode(`mutation($id: ID!) { cancelJob(id: $id) { id } }`, { id: jobsA[0] })).toBe(
      'NOT_FOUND',
    );
    const still = await a.ok<{ job: { state: string } }>(`query($id: ID!) { job(id: $id) { state } }`, {
      id: jobsA[0],
    });
    expect(still.job.state).toBe('QUEUED');
  });

  it('answers NOT_FOUND for an id that does not exist at all, the same way', async () => {
    const r = await b.request(`query($id: ID!) { job(id: $id) { id } }`, {
      id: '01900000-0000-7000-8000-000000000000',
    });
    expect(r.errors?.[0]).toMatchObject({ extensions: { code: 'NOT_FOUND' } });
    expect(r.errors?.[0].message).toBe('job 01900000-0000-7000-8000-000000000000 not found');
  });

  it('refuses a request without a valid token with 401', async () => {
    const anon = await new GraphQLClient(cp.graphqlUrl, null).request(`{ jobs { edges { node { id } } } }`);
    expect(anon.status).toBe(401);
    expect(anon.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    const forged = await new GraphQLClient(cp.graphqlUrl, 'hrt_forged').request(`{ agents { id } }`);
    expect(forged.status).toBe(401);
  });

  it('keeps a job with no eligible agent QUEUED, with the reason', async () => {
    // Tenant A has one enrolled agent (seeded above) that never heartbeats: offline.
    const r = await a.ok<{ submitJob: { state: string; stateReason: string } }>(SUBMIT, { c: ['true'] });
    expect(r.submitJob).toMatchObject({
      state: 'QUEUED',
      stateReason: 'waiting: no matching agent is online',
    });
    const gpu = await a.ok<{ submitJob: { state: string; stateReason: string } }>(
      `mutation { submitJob(input: { kind: COMMAND, command: ["true"], agentSelector: { labels: [{ key: "gpu", value: "h100" }] } }) { state stateReason } }`,
    );
    expect(gpu.submitJob).toEqual({ state: 'QUEUED', stateReason: 'waiting: no agent matches the selector' });
  });

  it('rejects invalid input with a validation error and writes no row', async () => {
    const before = await query<{ n: string }>(db.adminUrl, `SELECT count(*) AS n FROM jobs`);
    const empty = await a.request(SUBMIT, { c: [] });
    expect(empty.errors?.[0]).toMatchObject({
      message: 'command must name a program',
      extensions: { code: 'BAD_USER_INPUT' },
    });
    const badTimeout = await a.request(
      `mutation { submitJob(input: { kind: COMMAND, command: ["x"], timeoutSeconds: 0 }) { id } }`,
    );
    expect(badTimeout.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    const badKind = await a.request(`mutation { submitJob(input: { kind: SHELL, command: ["x"] }) { id } }`);
    expect(badKind.status).toBe(400);
    expect(badKind.errors?.[0].extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    const after = await query<{ n: string }>(db.adminUrl, `SELECT count(*) AS n FROM jobs`);
    expect(after[0].n).toBe(before[0].n);
  });
});

describe('row-level security', () => {
  const TABLES = [
    'organizations',
    'projects',
    'custom_roles',
    'models',
    'model_versions',
    'deployments',
    'users',
    'api_tokens',
    'agents',
    'join_tokens',
    'jobs',
    'job_attempts',
    'outbox',
    'audit_events',
    'audit_chain_heads',
    'role_bindings',
    'telemetry_settings',
    'telemetry_gpus',
    'telemetry_samples',
    'telemetry_gpu_1m',
    'telemetry_gpu_1h',
    'telemetry_host_1m',
    'telemetry_host_1h',
    'telemetry_idle_alerts',
  ];

  it('forces RLS with a tenant policy on every table that has tenant_id', async () => {
    const tables = await query<{ table: string; rls: boolean; forced: boolean; policies: string }>(
      db.adminUrl,
      `SELECT c.relname AS table, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
              (SELECT count(*) FROM pg_policies p WHERE p.tablename = c.relname AND 'hearth_app' = ANY(p.roles)) AS policies
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND (EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')
               OR c.relname = 'organizations')`,
    );
    expect(tables.map((t) => t.table).sort()).toEqual([...TABLES].sort());
    for (const t of tables)
      expect({ table: t.table, rls: t.rls, forced: t.forced, policies: Number(t.policies) }).toEqual({
        table: t.table,
        rls: true,
        forced: true,
        policies: 1,
      });
  });

  it('runs the app as a role that is neither superuser, BYPASSRLS, nor owner', async () => {
    const [role] = await query<{ rolsuper: boolean; rolbypassrls: boolean }>(
      db.adminUrl,
      `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'hearth_app'`,
    );
    expect(role).toEqual({ rolsuper: false, rolbypassrls: false });
    const owned = await query(
      db.adminUrl,
      `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner IN ('hearth_app', 'hearth_system')`,
    );
    expect(owned).toEqual([]);
  });

  it('shows the app role no rows when no tenant is set, and only its own with one', async () => {
    for (const table of TABLES) {
      const all = await query<{ n: string }>(db.adminUrl, `SELECT count(*) AS n FROM ${table}`);
      expect(Number(all[0].n)).toBeGreaterThan(0); // the data is there…
      // Without a tenant: no rows (or, for tables only the system role may read, no access at all).
      const none = await query<{ n: string }>(db.appUrl, `SELECT count(*) AS n FROM ${table}`).catch(
        (err: Error) => {
          if (/permission denied/.test(err.message)) return [{ n: '0' }];
          throw err;
        },
      );
      expect({ table, n: Number(none[0].n) }).toEqual({ table, n: 0 }); // …but not without a tenant
    }
    const scoped = await query<{ tenant: string }>(
      db.appUrl,
      `WITH s AS (SELECT set_config('app.tenant_id', $1, false)) SELECT DISTINCT j.tenant_id AS tenant FROM s, jobs j`,
      [orgA],
    );
    expect(scoped).toEqual([{ tenant: orgA }]);
  });

  it('cannot write a row into another tenant, nor move one there', async () => {
    const c = new pg.Client({ connectionString: db.appUrl });
    await c.connect();
    try {
      await c.query(`SELECT set_config('app.tenant_id', $1, false)`, [orgA]);
      await expect(
        c.query(`INSERT INTO users (id, tenant_id, email) VALUES (gen_random_uuid(), $1, 'x@y.z')`, [orgB]),
      ).rejects.toThrow(/row-level security/);
      await expect(c.query(`UPDATE jobs SET tenant_id = $1 WHERE id = $2`, [orgB, jobsA[1]])).rejects.toThrow(
        /row-level security/,
      );
      const touched = await c.query(`UPDATE jobs SET state_reason = 'x' WHERE tenant_id = $1`, [orgB]);
      expect(touched.rowCount).toBe(0);
    } finally {
      await c.end();
    }
  });

  it('never mixes tenants across 200 concurrent requests over a pool of 2 connections', async () => {
    const q = `{ jobs(first: 100) { edges { node { id } } } }`;
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        (i % 2 ? b : a)
          .ok<{ jobs: { edges: { node: { id: string } }[] } }>(q)
          .then((r) => ({ i, ids: r.jobs.edges.map((e) => e.node.id) })),
      ),
    );
    for (const r of results) {
      const mine = r.i % 2 ? jobsB : jobsA;
      const theirs = r.i % 2 ? jobsA : jobsB;
      expect(r.ids.filter((id) => theirs.includes(id))).toEqual([]);
      for (const id of mine) expect(r.ids).toContain(id);
    }
  });
});
