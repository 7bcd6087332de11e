/** Token buckets per key for one [[rate_limit]] entry: refilled lazily at each request, the least recently used key dropped past max_keys. */
import type { RateLimit } from "../../config/policy-types.ts";

/** Bucket is one key's tokens as of `at` (ms, performance.now()). */
type Bucket = { tokens: number; at: number };

/**
 * Buckets holds the buckets of one limit. A Map keeps insertion order, so moving a key to the end on each use makes the first key the least recently used:
 * eviction is one delete. A dropped key starts again with a full bucket (the bound costs precision for the rarest keys, never memory).
 */
export class Buckets {
  private readonly map = new Map<string, Bucket>();
  /** one is the single bucket of a `key = "route"` limit. */
  readonly one: Bucket;
  private readonly perMs: number;

  constructor(readonly limit: RateLimit) {
    this.perMs = limit.perSecond / 1000;
    this.one = { tokens: limit.burst, at: 0 };
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
        b = { tokens: this.limit.burst, at: now };
        this.map.set(key, b);
        return b;
      }
      // Most recently used last.
      this.map.delete(key);
      this.map.set(key, b);
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
