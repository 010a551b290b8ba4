/**
 * The local egress ledger: one JSON line per message the agent sends (time, subject, type, size,
 * sha256 of the payload, never the payload itself), so customer IT can audit exactly what left.
 * Lines are written synchronously before the send: a message that cannot be recorded is not sent.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';

export interface LedgerEntry {
  time: string;
  subject: string;
  type: string;
  bytes: number;
  sha256: string;
}

/** What the ledger recorded of one message type since the agent started. */
export interface EgressTotals {
  messages: number;
  bytes: number;
}

export class EgressLedger {
  private readonly totals = new Map<string, EgressTotals>();

  private constructor(
    private fd: number | null,
    readonly file: string,
  ) {}

  static open(file: string): EgressLedger {
    const fd = fs.openSync(file, 'a', 0o600);
    fs.fchmodSync(fd, 0o600);
    return new EgressLedger(fd, file);
  }

  record(subject: string, type: string, payload: Uint8Array): LedgerEntry {
    if (this.fd === null) throw new Error('egress ledger is closed');
    const entry: LedgerEntry = {
      time: new Date().toISOString(),
      subject,
      type,
      bytes: payload.byteLength,
      sha256: createHash('sha256').update(payload).digest('hex'),
    };
    fs.writeSync(this.fd, `${JSON.stringify(entry)}\n`);
    const totals = this.totals.get(type);
    if (totals) {
      totals.messages += 1;
      totals.bytes += entry.bytes;
    } else {
      this.totals.set(type, { messages: 1, bytes: entry.bytes });
    }
    return entry;
  }

  /** Messages and payload bytes recorded since the agent started, by message type (a contract type). */
  sent(): ReadonlyMap<string, Readonly<EgressTotals>> {
    return this.totals;
  }

  close(): void {
    if (this.fd === null) return;
    fs.closeSync(this.fd);
    this.fd = null;
  }
}
