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

/** Submits a COMMAND job asking for `gpus` GPUs; its id. */
export async function submitCommand(client: GraphQLClient, command: string[], gpus: number): Promise<string> {
  const { submitJob } = await client.ok<{ submitJob: { id: string } }>(
    `mutation($c: [String!]!, $g: Int) { submitJob(input: { kind: COMMAND, command: $c, gpus: $g }) { id } }`,
    { c: command, g: gpus },
  );
  return submitJob.id;
}

/** Waits until the organization's first agent is ONLINE and reports `gpus` GPUs. */
export function waitForAgentGpus(client: GraphQLClient, gpus: number): Promise<true> {
  return waitFor(
    async () => {
      const { agents } = await client.ok<{ agents: { state: string; gpus: { name: string }[] }[] }>(
        `{ agents { state gpus { name } } }`,
      );
      return agents[0]?.state === 'ONLINE' && agents[0].gpus.length === gpus;
    },
    { what: `the agent online with its ${gpus} GPUs` },
  );
}
