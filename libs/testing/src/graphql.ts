import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

export interface GraphQLResponse<T> {
  status: number;
  data: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** A GraphQL-over-HTTP client acting as one API user (bearer token). */
export class GraphQLClient {
  constructor(
    readonly url: string,
    readonly token: string | null,
  ) {}

  async request<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
  ): Promise<GraphQLResponse<T>> {
    const res = await fetch(this.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await res.json()) as { data?: T | null; errors?: GraphQLResponse<T>['errors'] };
    return { status: res.status, data: body.data ?? null, errors: body.errors };
  }

  /** Like request, but throws unless the response has data and no errors. */
  async ok<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>): Promise<T> {
    const r = await this.request<T>(query, variables);
    if (r.errors?.length || !r.data)
      throw new Error(`GraphQL error (${r.status}): ${JSON.stringify(r.errors)}`);
    return r.data;
  }

  /** The first error's code, e.g. NOT_FOUND. */
  async errorCode(query: string, variables?: Record<string, unknown>): Promise<string | undefined> {
    const r = await this.request(query, variables);
    return r.errors?.[0]?.extensions?.code;
  }

  /** A graphql-ws client authenticated in connection_init. */
  ws(): Client {
    return createClient({
      url: this.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: this.token ? { authorization: `Bearer ${this.token}` } : {},
      retryAttempts: 0,
      lazy: true,
    });
  }
}

/** Collects the events of one subscription until `until` says stop (or it errors). */
export function collect<T>(
  client: Client,
  query: string,
  variables: Record<string, unknown>,
  until: (events: T[]) => boolean,
): Promise<T[]> {
  const events: T[] = [];
  return new Promise((done, fail) => {
    const dispose = client.subscribe<T>(
      { query, variables },
      {
        next: (v) => {
          if (v.errors?.length) return fail(new Error(JSON.stringify(v.errors)));
          events.push(v.data as T);
          if (until(events)) {
            dispose();
            done(events);
          }
        },
        error: (e) => fail(e instanceof Error ? e : new Error(JSON.stringify(e))),
        complete: () => done(events),
      },
    );
  });
}
