/**
 * Samples waiting to be sent: kept while the agent is disconnected and sent in order (backfill)
 * once it is back. Bounded: when full, the oldest sample goes to make room, and the drop is
 * counted so the next message can say how many never made it. A batch whose send failed is put
 * back in front, in its order, with its drop count.
 */
export interface Batch<T> {
  items: T[];
  /** Samples dropped, oldest first, since the previous batch was taken. */
  dropped: number;
}

export class SampleBuffer<T> {
  private readonly ring: (T | undefined)[];
  private head = 0;
  private length = 0;
  private unreported = 0;
  /** Every sample dropped since the buffer was made. */
  droppedTotal = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    }
    this.ring = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.length;
  }

  /** Adds the newest sample; when full, drops the oldest. */
  push(item: T): void {
    if (this.length === this.capacity) {
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.length--;
      this.drop(1);
    }
    this.ring[(this.head + this.length) % this.capacity] = item;
    this.length++;
  }

  /** Removes and returns up to max of the oldest samples, with the drops not yet reported. */
  take(max: number): Batch<T> {
    const n = Math.max(0, Math.min(Math.floor(max), this.length));
    const items: T[] = [];
    for (let i = 0; i < n; i++) {
      items.push(this.ring[this.head] as T);
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
    }
    this.length -= n;
    const dropped = this.unreported;
    this.unreported = 0;
    return { items, dropped };
  }

  /**
   * Puts a batch that could not be sent back in front of what arrived since, in its order. What no
   * longer fits is its oldest samples: those are dropped (and counted), as push would have.
   */
  putBack(batch: Batch<T>): void {
    this.unreported += batch.dropped;
    for (let i = batch.items.length - 1; i >= 0; i--) {
      if (this.length === this.capacity) {
        this.drop(i + 1);
        return;
      }
      this.head = (this.head - 1 + this.capacity) % this.capacity;
      this.ring[this.head] = batch.items[i];
      this.length++;
    }
  }

  private drop(n: number): void {
    this.unreported += n;
    this.droppedTotal += n;
  }
}
