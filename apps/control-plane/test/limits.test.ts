/**
 * Abuse limits: a rate limit per organization and principal (429 + Retry-After; a principal's tokens
 * share it), and GraphQL depth and cost limits refused before execution.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  createOrganization,
  createTestDatabase,
  GraphQLClient,
  startControlPlane,
  type ControlPlane,
  type TestDatabase,
  SHARED_NATS_URL,
} from '@hearth/testing';

let db: TestDatabase;
let cp: ControlPlane;
let tokens: string[];

beforeAll(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({
    DATABASE_URL: db.appUrl,
    NATS_URL: SHARED_NATS_URL,
    RATE_LIMIT_PER_MINUTE: '5',
    GRAPHQL_MAX_COMPLEXITY: '12',
    GRAPHQL_MAX_DEPTH: '4',
  });
  tokens = [];
  for (const name of ['Busy', 'Calm', 'Curious'])
    tokens.push((await createOrganization(db.appUrl, name)).adminToken);
});

afterAll(async () => {
  await cp?.stop();
  await db?.drop();
});

describe('abuse limits', () => {
  it('answers 429 with Retry-After once a token exceeds its rate, without affecting other tokens', async () => {
    const busy = new GraphQLClient(cp.graphqlUrl, tokens[0]);
    for (let i = 0; i < 5; i++) expect((await busy.request(`{ myPermissions }`)).status).toBe(200);
    const res = await fetch(cp.graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens[0]}` },
      body: JSON.stringify({ query: '{ myPermissions }' }),
    });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await res.json()).toMatchObject({ errors: [{ extensions: { code: 'RATE_LIMITED' } }] });
    expect((await new GraphQLClient(cp.graphqlUrl, tokens[1]).request(`{ myPermissions }`)).status).toBe(200);
    // A fresh token of the same principal does not get a fresh budget once it is known to be theirs.
    const calm = new GraphQLClient(cp.graphqlUrl, tokens[1]);
    for (let i = 0; i < 2; i++) expect((await calm.request(`{ myPermissions }`)).status).toBe(200);
    const { createApiToken } = await calm.ok<{ createApiToken: { token: string } }>(
      `mutation { createApiToken(input: { name: "second" }) { token } }`,
    );
    const second = new GraphQLClient(cp.graphqlUrl, createApiToken.token);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await second.request(`{ myPermissions }`)).status);
    // The principal has used 4 of its 5 with its first token: one more with the new one, then 429.
    expect(statuses).toEqual([200, 429, 429, 429]);
    expect((await fetch(`${cp.url}/healthz`)).status).toBe(200); // health checks are never limited
  });

  it('refuses a query deeper than the limit before running it', async () => {
    const r = await new GraphQLClient(cp.graphqlUrl, tokens[2]).request(
      `{ jobs { edges { node { agent { gpus { name } } } } } }`,
    );
    expect(r.status).toBe(400);
    expect(r.errors?.[0]).toMatchObject({ extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } });
    expect(r.errors?.[0].message).toMatch(/depth/i);
  });

  it('refuses a query costlier than the limit before running it', async () => {
    const r = await new GraphQLClient(cp.graphqlUrl, tokens[2]).request(
      `{ jobs { edges { cursor node { id state stateReason exitCode attempts maxAttempts timeoutSeconds logTail createdAt } } } }`,
    );
    expect(r.status).toBe(400);
    expect(r.errors?.[0].message).toMatch(/query is too complex: cost \d+, limit 12/);
    const small = await new GraphQLClient(cp.graphqlUrl, tokens[2]).request(
      `{ jobs { edges { node { id } } } }`,
    );
    expect(small.status).toBe(200);
  });
});
