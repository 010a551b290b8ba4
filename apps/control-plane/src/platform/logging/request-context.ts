import { AsyncLocalStorage } from 'node:async_hooks';

/** What every log line of a request carries. The tenant is filled in once the principal is known. */
export interface RequestContext {
  requestId: string;
  tenantId?: string;
  /** Caller's address and client, for the audit trail. */
  ip?: string;
  userAgent?: string;
}

const storage = new AsyncLocalStorage<RequestContext>();

export const runWithContext = <T>(ctx: RequestContext, fn: () => T): T => storage.run(ctx, fn);
export const requestContext = (): RequestContext | undefined => storage.getStore();
