/** The token buckets of every rate limit, kept across reloads: a generation that keeps a route's limit unchanged keeps its buckets (and what clients spent). */
import type { RateLimit } from "../../config/policy-types.ts";
import { Buckets } from "./token-buckets.ts";

type Held = { readonly buckets: Buckets; users: number };
const held = new Map<string, Held>();

/**
 * acquireBuckets returns the buckets of `limit` on `route`, shared with every generation that has the same limit there (same key, rate, burst, max_keys), and
 * the release to call when the generation is disposed of; the last release drops them. Making a new set writes nothing an older generation reads.
 */
export function acquireBuckets(route: string, limit: RateLimit, index: number): { buckets: Buckets; release: () => void } {
  const id = `${route}\u0000${index}\u0000${limit.text}\u0000${limit.perSecond}\u0000${limit.burst}\u0000${limit.maxKeys}`;
  let h = held.get(id);
  if (h === undefined) {
    h = { buckets: new Buckets(limit), users: 0 };
    held.set(id, h);
  }
  h.users++;
  const entry = h;
  let released = false;
  return {
    buckets: h.buckets,
    release: () => {
      if (released) return;
      released = true;
      if (--entry.users === 0 && held.get(id) === entry) held.delete(id);
    },
  };
}
