/** Writing to a Bun socket at its pace: what the socket did not take is queued and written on drain, and a writer can wait until all of it has gone. */

/** Writable is the part of a Bun socket a WriteQueue uses: write returns how many bytes the socket took. */
export type Writable = { write(data: Uint8Array): number };

/** WriteQueue holds the bytes a socket has not taken yet; the socket's drain handler calls onDrain. A Map-free array; nothing is copied but partial writes' rests. */
export class WriteQueue {
  /** queue and drained are made on first need: most connections never wait for the socket, and an idle one should cost as little as it can. */
  private queue: Uint8Array[] | undefined;
  private drained: (() => void)[] | undefined;

  /** pending says whether bytes are still waiting for the socket. */
  get pending(): boolean {
    return this.queue !== undefined && this.queue.length > 0;
  }

  /**
   * write sends data (a string is sent as latin1 bytes) now, or queues what the socket did not take, keeping the order. The bytes must not change afterwards:
   * Bun may still hold them after write() reported them taken.
   */
  write(s: Writable, data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : data;
    if (this.queue !== undefined && this.queue.length > 0) {
      this.queue.push(bytes);
      return;
    }
    const n = s.write(bytes);
    if (n < bytes.byteLength) (this.queue ??= []).push(n <= 0 ? bytes : bytes.subarray(n));
  }

  /** onDrain writes what is queued, as far as the socket takes it; when all has gone, a waiting flushed() resolves. */
  onDrain(s: Writable): void {
    const queue = this.queue;
    if (queue !== undefined)
      while (queue.length > 0) {
        const b = queue[0]!;
        const n = s.write(b);
        if (n < b.byteLength) {
          if (n > 0) queue[0] = b.subarray(n);
          return;
        }
        queue.shift();
      }
    this.release();
  }

  /** flushed resolves when everything written so far has gone to the socket; undefined when it already has (no promise). */
  flushed(): Promise<void> | undefined {
    if (!this.pending) return undefined;
    return new Promise((r) => (this.drained ??= []).push(r));
  }

  /** clear drops what is queued (the socket is gone) and lets a waiting writer go on. */
  clear(): void {
    this.queue = undefined;
    this.release();
  }

  private release(): void {
    const waiting = this.drained;
    if (waiting === undefined || waiting.length === 0) return;
    this.drained = undefined;
    for (const d of waiting) d();
  }
}
