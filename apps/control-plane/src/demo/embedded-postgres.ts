import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { createServer } from 'node:net';

/**
 * Postgres for the demo: PGlite (Postgres compiled to WASM) served over a local socket, so the control
 * plane uses the same pg driver and SQL as in production. Every socket connection is a superuser
 * here; the control plane switches to hearth_app in each transaction, so row-level security holds.
 * PGlite runs one query at a time; the socket server queues the rest.
 */
export async function startEmbeddedPostgres(
  dataDir: string,
): Promise<{ url: string; stop(): Promise<void> }> {
  const db = await PGlite.create(dataDir);
  const port = await freePort();
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port, maxConnections: 64 });
  await server.start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => done(port));
    });
  });
}
