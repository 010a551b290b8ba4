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
