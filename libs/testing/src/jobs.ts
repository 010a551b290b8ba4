import type { GraphQLClient } from './graphql.js';
import { waitFor } from './wait.js';

/** Reads one job through the API with the given selection set. */
export async function getJob<T>(client: GraphQLClient, id: string, fields: string): Promise<T> {
  return (await client.ok<{ job: T }>(`query($id: ID!) { job(id: $id) { ${fields} } }`, { id })).job;
}

/** Polls the job until it is in one of `states`; returns it as the API shows it then. */
export function waitForJob<T extends { state: string }>(
  client: GraphQLClient,
  id: string,
  states: string[],
  fields = 'state',
  timeoutMs = 30_000,
): Promise<T> {
  return waitFor(
    async () => {
      const job = await getJob<T>(client, id, fields.includes('state') ? fields : `state ${fields}`);
      return states.includes(job.state) ? job : undefined;
    },
    { timeoutMs, what: `job ${id} to reach ${states.join('/')}` },
  );
}
