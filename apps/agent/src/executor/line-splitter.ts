import { StringDecoder } from 'node:string_decoder';

/**
 * Turns a byte stream into text lines (UTF-8 safe across chunk boundaries). A line longer than
 * maxPending characters is cut and emitted in pieces, so a process that never prints a newline
 * cannot grow the agent's memory.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  constructor(
    private readonly onLine: (text: string) => void,
    private readonly maxPending = 16 * 1024,
  ) {}

  push(chunk: Buffer): void {
    this.pending += this.decoder.write(chunk);
    let newline = this.pending.indexOf('\n');
    while (newline >= 0) {
      this.emit(this.pending.slice(0, newline));
      this.pending = this.pending.slice(newline + 1);
      newline = this.pending.indexOf('\n');
    }
    while (this.pending.length > this.maxPending) {
      this.emit(this.pending.slice(0, this.maxPending));
      this.pending = this.pending.slice(this.maxPending);
    }
  }

  end(): void {
    this.pending += this.decoder.end();
    if (this.pending !== '') this.emit(this.pending);
    this.pending = '';
  }

  private emit(line: string): void {
    this.onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
  }
}
