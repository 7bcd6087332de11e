/** Selection policies: which endpoint of a pool gets the next request. */
import type { LoadBalance } from "../config/types.ts";
import type { Endpoint } from "./endpoint.ts";

/** SelectionPolicy picks one endpoint that is available at `now` and not in `exclude` (those already tried); undefined when none is. With `anyHealth`, the active health verdict is ignored (the all-unhealthy fallback). It allocates nothing. */
export interface SelectionPolicy {
  select(pool: readonly Endpoint[], now: number, exclude?: readonly Endpoint[], anyHealth?: boolean, cap?: number, key?: string): Endpoint | undefined;
}

function usable(e: Endpoint, now: number, exclude: readonly Endpoint[] | undefined, anyHealth: boolean | undefined, cap: number | undefined): boolean {
  return (anyHealth ? e.cooled(now) : e.available(now)) && (cap === undefined || e.inflight - e.websockets < cap) && (exclude === undefined || !exclude.includes(e));
}

/** roundRobin cycles through the pool, skipping unavailable endpoints; with weights (SRV) it is smooth weighted round-robin: each endpoint gets its share, interleaved. */
export function roundRobin(): SelectionPolicy {
  let next = 0;
  const current = new WeakMap<Endpoint, number>();
  // Whether the pool is weighted is worked out once per endpoint list (discovery replaces the array when weights change).
  let seen: readonly Endpoint[] | undefined;
  let weighted = false;
  return {
    select(pool, now, exclude, anyHealth, cap) {
      const n = pool.length;
      if (pool !== seen) {
        seen = pool;
        weighted = pool.some((e) => e.weight !== 1);
      }
      if (weighted) {
        // nginx's smooth weighted round-robin: add each weight, pick the largest, subtract the total from it.
        let best: Endpoint | undefined;
        let total = 0;
        for (const e of pool) {
          if (!usable(e, now, exclude, anyHealth, cap)) continue;
          const c = (current.get(e) ?? 0) + e.weight;
          current.set(e, c);
          total += e.weight;
          if (best === undefined || c > current.get(best)!) best = e;
        }
        if (best) current.set(best, current.get(best)! - total);
        return best;
      }
      for (let i = 0; i < n; i++) {
        const e = pool[(next + i) % n]!;
        if (usable(e, now, exclude, anyHealth, cap)) {
          next = (next + i + 1) % n;
          return e;
        }
      }
      return undefined;
    },
  };
}

/** hash32 is FNV-1a over a string: fast, and good enough to spread keys. */
export function hash32(s: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return (h >>> 0) / 4294967296;
}

/** consistentHash picks by weighted rendezvous hashing of the request's key: the same key goes to the same endpoint while it is available, and when an endpoint leaves only its keys move. Without a key it falls back to round-robin. */
export function consistentHash(): SelectionPolicy {
  const fallback = roundRobin();
  return {
    select(pool, now, exclude, anyHealth, cap, key) {
      if (key === undefined || key === "") return fallback.select(pool, now, exclude, anyHealth, cap);
      let best: Endpoint | undefined;
      let bestScore = -Infinity;
      for (const e of pool) {
        if (!usable(e, now, exclude, anyHealth, cap)) continue;
        // Weighted rendezvous: score = -weight / ln(u), u uniform in (0, 1) from hash(key, endpoint).
        const u = Math.min(Math.max(hash32(key, e.urlHash), 1e-12), 1 - 1e-12);
        const score = -e.weight / Math.log(u);
        if (score > bestScore) {
          best = e;
          bestScore = score;
        }
      }
      return best;
    },
  };
}

/** leastRequests picks the endpoint with the fewest requests in flight; ties go round-robin so equal endpoints share load. */
export function leastRequests(): SelectionPolicy {
  let start = 0;
  return {
    select(pool, now, exclude, anyHealth, cap) {
      const n = pool.length;
      let best: Endpoint | undefined;
      for (let i = 0; i < n; i++) {
        const e = pool[(start + i) % n]!;
        if (usable(e, now, exclude, anyHealth, cap) && (best === undefined || e.inflight < best.inflight)) best = e;
      }
      start = (start + 1) % (n || 1);
      return best;
    },
  };
}

/** policyFor builds the policy a route's `load_balance` names. */
export function policyFor(name: LoadBalance): SelectionPolicy {
  return name === "least_requests" ? leastRequests() : name === "hash" ? consistentHash() : roundRobin();
}
