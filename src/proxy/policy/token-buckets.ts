/** Token buckets per key for one [[rate_limit]] entry: refilled lazily at each request, the least recently used key dropped past max_keys. */
import type { RateLimit } from "../../config/policy-types.ts";

/** Bucket is one key's tokens as of `at` (ms, performance.now()); `moved` is the Buckets' clock when it last went to the end of the order. */
type Bucket = { tokens: number; at: number; moved: number };

/**
 * Buckets holds the buckets of one limit. A Map keeps insertion order, so moving a key to the end when used makes the first key the least recently used:
 * eviction is one delete. A key is moved only when a quarter of max_keys moves and insertions happened since its last move (a busy client's bucket is not
 * reinserted on each request), so the order is nearly LRU: a dropped key was unused for at least three quarters of the keys' turnover. A dropped key starts
 * again with a full bucket (the bound costs precision for the rarest keys, never memory).
 */
export class Buckets {
  private readonly map = new Map<string, Bucket>();
  /** one is the single bucket of a `key = "route"` limit. */
  readonly one: Bucket;
  private readonly perMs: number;
  private readonly stale: number;
  private clock = 0;

  constructor(readonly limit: RateLimit) {
    this.perMs = limit.perSecond / 1000;
    this.stale = Math.max(1, Math.floor(limit.maxKeys / 4));
    this.one = { tokens: limit.burst, at: 0, moved: 0 };
  }

  /** size is how many keys are tracked. */
  get size(): number {
    return this.map.size;
  }

  /** bucket finds (or starts, full) the bucket of key and brings its tokens up to `now`. */
  bucket(key: string | undefined, now: number): Bucket {
    let b: Bucket | undefined;
    if (key === undefined) b = this.one;
    else {
      b = this.map.get(key);
      if (b === undefined) {
        if (this.map.size >= this.limit.maxKeys) this.map.delete(this.map.keys().next().value!);
        b = { tokens: this.limit.burst, at: now, moved: ++this.clock };
        this.map.set(key, b);
        return b;
      }
      // Most recently used last, once it has drifted towards the front.
      if (this.clock - b.moved >= this.stale) {
        this.map.delete(key);
        this.map.set(key, b);
        b.moved = ++this.clock;
      }
    }
    const t = b.tokens + (now - b.at) * this.perMs;
    b.tokens = Math.min(t, this.limit.burst);
    b.at = now;
    return b;
  }

  /** waitSeconds is how long until bucket b holds a whole token again. */
  waitSeconds(b: Bucket): number {
    return Math.max(1, Math.ceil((1 - b.tokens) / this.limit.perSecond));
  }
}
