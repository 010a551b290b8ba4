import { StringDecoder } from 'node:string_decoder';

/**
 * Turns a byte stream into text lines (UTF-8 safe across chunk boundaries). A line longer than
 * maxPending characters is cut and emitted in pieces, so a process that never prints a newline
 * cannot grow the agent's memory.
 *
 * A bare '\r' returns the cursor, and progress bars (tqdm) redraw over what came before it: a
 * line keeps only what a terminal would show, the text after its last '\r' that has text after it.
 *
 * With a gate, lines no one wants (the log tail's rate limit would drop them) are only counted:
 * a chunk's lines but its last `keepLast` are skipped without making a string of each. A job
 * printing a flood of tiny lines (`yes`) otherwise costs the agent a core in substrings.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  constructor(
    private readonly onLine: (text: string) => void,
    private readonly maxPending = 16 * 1024,
    private readonly gate?: LineGate,
  ) {}

  push(chunk: Buffer): void {
    this.pending += this.decoder.write(chunk);
    if (this.gate && !this.gate.wanted()) this.skipAllButLast(this.gate);
    let newline = this.pending.indexOf('\n');
    while (newline >= 0) {
      this.emit(this.pending.slice(0, newline));
      this.pending = this.pending.slice(newline + 1);
      newline = this.pending.indexOf('\n');
    }
    // Redrawn states go now, so a bar that never prints '\n' is not cut into stale pieces. Trailing
    // '\r's stay: the next chunk may bring the '\n' of a "\r\n".
    this.pending = this.pending.slice(visibleStart(this.pending));
    while (this.pending.length > this.maxPending) {
      let cut = this.maxPending;
      const last = this.pending.charCodeAt(cut - 1);
      if (last >= 0xd800 && last <= 0xdbff) cut -= 1; // keep a surrogate pair whole
      this.emit(this.pending.slice(0, cut));
      this.pending = this.pending.slice(cut);
    }
  }

  end(): void {
    this.pending += this.decoder.end();
    if (this.pending !== '') this.emit(this.pending);
    this.pending = '';
  }

  /** Drops the complete lines before the last `keepLast` ones, counting them. */
  private skipAllButLast(gate: LineGate): void {
    // The newline that ends the last line to skip: keepLast + 1 newlines from the end.
    let cut = this.pending.length;
    for (let i = 0; i <= gate.keepLast; i++) {
      cut = cut === 0 ? -1 : this.pending.lastIndexOf('\n', cut - 1);
      if (cut < 0) return; // no more complete lines than are kept
    }
    let count = 0;
    for (let at = this.pending.indexOf('\n'); at !== -1 && at <= cut; at = this.pending.indexOf('\n', at + 1))
      count++;
    this.pending = this.pending.slice(cut + 1);
    gate.skipped(count);
  }

  private emit(line: string): void {
    this.onLine(line.slice(visibleStart(line), textEnd(line)));
  }
}

/** Whether lines are wanted now, and where the count of those skipped goes. */
export interface LineGate {
  wanted(): boolean;
  skipped(count: number): void;
  /** Complete lines of a chunk still handed on when not wanted (a tail keeps a job's last lines). */
  keepLast: number;
}

/** The end of `text` without its trailing '\r's. */
function textEnd(text: string): number {
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) === 0x0d) end--;
  return end;
}

/** Where what a terminal shows of `text` starts: after the last '\r' that has text after it. */
function visibleStart(text: string): number {
  const end = textEnd(text);
  return end === 0 ? 0 : text.lastIndexOf('\r', end - 1) + 1;
}
