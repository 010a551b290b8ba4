import { StringDecoder } from 'node:string_decoder';

/**
 * Turns a byte stream into text lines (UTF-8 safe across chunk boundaries). A line longer than
 * maxPending characters is cut and emitted in pieces, so a process that never prints a newline
 * cannot grow the agent's memory.
 *
 * A bare '\r' returns the cursor, and progress bars (tqdm) redraw over what came before it: a
 * line keeps only what a terminal would show, the text after its last '\r' that has text after it.
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

  private emit(line: string): void {
    this.onLine(line.slice(visibleStart(line), textEnd(line)));
  }
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
