/**
 * NATS server addresses as the control plane and the agent take them (NATS_URL, AGENT_NATS_URL,
 * `--nats-url`, the servers an agent is given at join): comma-separated nats:// or tls:// URLs, or
 * host:port. Both sides dial with @nats-io/transport-node, which speaks TCP only, so a WebSocket URL
 * is refused here with a message rather than at every reconnect.
 */
const NATS_SERVER = /^(?:(?:nats|tls):\/\/[^\s,/]+\/?|[^\s,:/]+:\d{1,5})$/;

/** The servers of a comma-separated list, or what is wrong with the first one that is not one. */
export function parseNatsServers(raw: string): { servers: string[] } | { error: string } {
  const servers = raw.split(',').map((s) => s.trim());
  for (const server of servers) {
    if (NATS_SERVER.test(server)) continue;
    const shown = JSON.stringify(server.slice(0, 200));
    return {
      error: /^wss?:\/\//i.test(server)
        ? `${shown}: NATS over WebSocket is not supported; give the nats:// or tls:// address of the NATS server`
        : `${shown} is not a NATS server address; expected nats://host:4222, tls://host:4222 or host:4222`,
    };
  }
  return { servers };
}

/**
 * Whether `host` (a URL's hostname; IPv6 with or without brackets) is this machine: `localhost`,
 * a name under `.localhost` (RFC 6761), 127.0.0.0/8, ::1 or ::ffff:127.x.x.x. Traffic to it never
 * crosses a network, so plaintext there exposes nothing.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  if (v4) return v4.slice(1).every((o) => Number(o) <= 255) && v4[1] === '127';
  return h === '::1' || h === '0:0:0:0:0:0:0:1';
}

/** The host of one server as parseNatsServers gives it (nats://, tls:// or host:port). */
export function natsServerHost(server: string): string {
  return new URL(/^(?:nats|tls):\/\//.test(server) ? server : `nats://${server}`).hostname;
}

/**
 * Whether a connection to `servers` must be TLS. @nats-io/transport-node upgrades to TLS whenever
 * the server offers it, but it ignores the tls:// scheme: against a server that offers no TLS it
 * would go on in plaintext where other NATS clients refuse. So TLS is required (its `tls: {}`
 * option) when any server is named tls://, and, for a caller that asks (the agent, whose
 * connection crosses the customer's network and the Internet), when any server is not on this
 * machine. The connection options apply to every server of the list alike.
 */
export function natsTlsRequired(servers: readonly string[], options: { beyondLoopback: boolean }): boolean {
  return servers.some(
    (s) => s.startsWith('tls://') || (options.beyondLoopback && !isLoopbackHost(natsServerHost(s))),
  );
}

/**
 * Whether a connection error is @nats-io/transport-node refusing, under a TLS requirement, a
 * server that offers no TLS (its message is the only sign of it).
 */
export function isNatsServerWithoutTls(err: unknown): boolean {
  return err instanceof Error && err.message.includes("does not support 'tls'");
}
