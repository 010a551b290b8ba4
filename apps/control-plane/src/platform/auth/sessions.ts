/**
 * Live sessions: long-lived graphql-ws subscriptions authenticated once, at connection_init. When a
 * token is revoked or its principal removed, every replica must end that principal's open streams at
 * once, not when the socket happens to close: revocations are broadcast over core NATS (a subject
 * agents cannot read) and each replica aborts its matching subscriptions.
 */
import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { LOGGER } from '../logging/logging.module.js';
import { NatsService } from '../messaging/nats.service.js';
import type { Principal } from './principal.js';

const SUBJECT = 'hearth._cp.sessions.revoked';

export interface Revocation {
  tenantId: string;
  principalIds?: string[];
  tokenIds?: string[];
}

interface Session {
  principal: Principal;
  end: (reason: string) => void;
}

@Injectable()
export class Sessions implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly live = new Set<Session>();
  private sub: Subscription | null = null;

  constructor(
    @Inject(NatsService) private readonly nats: NatsService,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  onApplicationBootstrap() {
    this.sub = this.nats.nc.subscribe(SUBJECT, {
      callback: (err, msg) => {
        if (err) return;
        try {
          this.endMatching(msg.json<Revocation>());
        } catch (e) {
          this.log.warn({ err: e }, 'ignored a malformed session revocation');
        }
      },
    });
  }

  onApplicationShutdown() {
    this.sub?.unsubscribe();
  }

  /** Registers a live stream; the returned function unregisters it. */
  track(principal: Principal, end: (reason: string) => void): () => void {
    const session = { principal, end };
    this.live.add(session);
    return () => this.live.delete(session);
  }

  /** Call after the revoking transaction committed. Ends matching sessions here and on every replica. */
  revoke(r: Revocation): void {
    this.endMatching(r);
    try {
      this.nats.nc.publish(SUBJECT, JSON.stringify(r));
    } catch (err) {
      // Other replicas still refuse the credentials on the next request; only their open streams linger.
      this.log.error({ err }, 'could not broadcast a session revocation');
    }
  }

  private endMatching(r: Revocation) {
    for (const s of this.live) {
      const p = s.principal;
      if (p.tenantId !== r.tenantId) continue;
      if (r.principalIds?.includes(p.userId) || r.tokenIds?.includes(p.tokenId)) {
        this.live.delete(s);
        s.end('credentials revoked');
      }
    }
  }
}
