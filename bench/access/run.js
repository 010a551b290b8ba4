// bench/access: what authorization and auditing add to a request.
//   npm run build && node bench/access/run.js
// 1. Authorization per request: the caller's bindings (an organization role and a project role) and
//    token limits → effective grants → CASL ability, then the guard's check and a project-level
//    object check (in process, as the guard and services do on every operation).
// 2. The audit write inside a mutation's transaction: the same transaction (BEGIN + tenant scope,
//    one UPDATE, COMMIT) with and without the audit INSERT (hash chain computed by the trigger),
//    against the local Postgres as hearth_app.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { createOrganization, createTestDatabase } from '@hearth/testing';
import { allows, allowsOn, buildAbility } from '../../apps/control-plane/dist/platform/access/ability.js';
import { effectiveGrants } from '../../apps/control-plane/dist/platform/access/grants.js';

const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)];
const us = (ns) => Math.round(Number(ns) / 10) / 100; // ns → µs, 2 decimals

// 1. authorization
const authz = [];
const project = randomUUID();
const bindings = [
  { role: 'viewer', projectId: null, permissions: null },
  { role: 'ml_engineer', projectId: project, permissions: null },
];
for (let i = 0; i < 20000; i++) {
  const t = process.hrtime.bigint();
  const ability = buildAbility(effectiveGrants(bindings, { scopes: null, projectId: null }));
  allows(ability, 'jobs:submit');
  allows(ability, 'audit:read');
  allowsOn(ability, 'jobs:submit', project);
  authz.push(Number(process.hrtime.bigint() - t));
}
const warmAuthz = authz.slice(2000);

// 2. audit write
const db = await createTestDatabase();
const org = await createOrganization(db.appUrl, 'Bench Access');
const c = new pg.Client({ connectionString: db.appUrl });
await c.connect();
const scope = `BEGIN; SELECT set_config('role', 'hearth_app', true), set_config('app.tenant_id', '${org.organizationId}', true)`;
const audit = `INSERT INTO audit_events (id, tenant_id, seq, occurred_at, actor_type, actor_id, action, target_type, target_id, outcome, request_id, changes, prev_hash, hash)
               VALUES ($1::uuid, $2, 0, now(), 'user', 'bench', 'job.submit', 'job', $1::text, 'success', 'bench', '{"command":["true"]}', '\\x', '\\x')`;
async function mutation(withAudit) {
  const t = process.hrtime.bigint();
  await c.query(scope);
  await c.query(`UPDATE organizations SET name = name WHERE id = $1`, [org.organizationId]);
  if (withAudit) await c.query(audit, [randomUUID(), org.organizationId]);
  await c.query('COMMIT');
  return Number(process.hrtime.bigint() - t);
}
const without = [];
const withAudit = [];
for (let i = 0; i < 200; i++) await mutation(i % 2 === 0); // warm-up
for (let i = 0; i < 2000; i++) {
  without.push(await mutation(false));
  withAudit.push(await mutation(true));
}
await c.end();
await db.drop();

const result = {
  date: new Date().toISOString(),
  authorizationPerRequestUs: { p50: us(pct(warmAuthz, 0.5)), p99: us(pct(warmAuthz, 0.99)) },
  mutationWithoutAuditUs: { p50: us(pct(without, 0.5)), p99: us(pct(without, 0.99)) },
  mutationWithAuditUs: { p50: us(pct(withAudit, 0.5)), p99: us(pct(withAudit, 0.99)) },
  auditAddsP50Us: us(pct(withAudit, 0.5) - pct(without, 0.5)),
};
console.log(JSON.stringify(result, null, 2));
