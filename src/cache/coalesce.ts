/** Request coalescing: of concurrent misses for one key, one goes to the origin and the others wait for it (a lock like nginx's proxy_cache_lock), bounded in time. */

/** Turn is a request's place for a key: the leader fetches and must call done(); a follower waits and then looks in the store again. */
export type Turn = { readonly leader: true; done(): void } | { readonly leader: false; readonly wait: Promise<void> };

/** Coalescer tracks the fetches in flight by key; a Map hit per miss. */
export class Coalescer {
  private readonly inflight = new Map<string, Promise<void>>();

  /**
   * join makes the caller the leader for key when nobody fetches it, else a follower whose `wait` settles when the leader is done (with or without a stored
   * response) or after maxWaitMs, whichever is first.
   */
  join(key: string, maxWaitMs: number): Turn {
    const running = this.inflight.get(key);
    if (running !== undefined) {
      let timer: Timer | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, maxWaitMs)));
      return { leader: false, wait: Promise.race([running, timeout]).finally(() => clearTimeout(timer)) };
    }
    let finish!: () => void;
    const p = new Promise<void>((resolve) => (finish = resolve));
    this.inflight.set(key, p);
    return {
      leader: true,
      done: () => {
        if (this.inflight.get(key) === p) this.inflight.delete(key);
        finish();
      },
    };
  }
}
