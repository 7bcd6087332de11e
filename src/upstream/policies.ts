/** Selection policies: which endpoint of a pool gets the next request. */
import type { LoadBalance } from "../config/types.ts";
import { hash32 } from "../lib/hash.ts";
import type { Endpoint } from "./endpoint.ts";
import type { Target } from "./target.ts";

/**
 * Overlook names the verdicts a fallback selection passes over: the active checks' ("health": the all-unhealthy fallback), passive ejection ("ejection":
 * a pool is never left without an endpoint to try), or both.
 */
export type Overlook = "health" | "ejection" | "both";

/**
 * SelectionPolicy picks one target whose endpoint is available at `now` and not in `exclude` (those already tried); undefined when none is. With `overlook`,
 * the verdicts it names are passed over. It allocates nothing.
 */
export interface SelectionPolicy {
  select(pool: readonly Target[], now: number, exclude?: readonly Endpoint[], overlook?: Overlook, cap?: number, key?: string): Target | undefined;
}

function usable(t: Target, now: number, exclude: readonly Endpoint[] | undefined, overlook: Overlook | undefined, cap: number | undefined): boolean {
  const e = t.endpoint;
  const ok = overlook === undefined ? e.available(now) : overlook === "health" ? e.cooled(now) : overlook === "ejection" ? e.healthy : true;
  return ok && (cap === undefined || e.inflight - e.websockets < cap) && (exclude === undefined || !exclude.includes(e));
}

/**
 * roundRobin cycles through the pool, skipping unavailable endpoints; with weights (SRV) it is smooth weighted round-robin: each endpoint gets its share,
 * interleaved.
 */
export function roundRobin(): SelectionPolicy {
  let next = 0;
  // Keyed by endpoint: discovery builds new targets for the same endpoints, and their turn must carry over.
  const current = new WeakMap<Endpoint, number>();
  // Whether the pool is weighted is worked out once per target list (discovery replaces the array when weights change).
  let seen: readonly Target[] | undefined;
  let weighted = false;
  return {
    select(pool, now, exclude, overlook, cap) {
      const n = pool.length;
      if (pool !== seen) {
        seen = pool;
        weighted = pool.some((t) => t.weight !== 1);
      }
      if (weighted) {
        // nginx's smooth weighted round-robin: add each weight, pick the largest, subtract the total from it.
        let best: Target | undefined;
        let total = 0;
        for (const t of pool) {
          if (!usable(t, now, exclude, overlook, cap)) continue;
          const c = (current.get(t.endpoint) ?? 0) + t.weight;
          current.set(t.endpoint, c);
          total += t.weight;
          if (best === undefined || c > current.get(best.endpoint)!) best = t;
        }
        if (best) current.set(best.endpoint, current.get(best.endpoint)! - total);
        return best;
      }
      for (let i = 0; i < n; i++) {
        const t = pool[(next + i) % n]!;
        if (usable(t, now, exclude, overlook, cap)) {
          next = (next + i + 1) % n;
          return t;
        }
      }
      return undefined;
    },
  };
}

/**
 * consistentHash picks by weighted rendezvous hashing of the request's key: the same key goes to the same endpoint while it is available, and when an endpoint
 * leaves only its keys move. Without a key it falls back to round-robin.
 */
export function consistentHash(): SelectionPolicy {
  const fallback = roundRobin();
  return {
    select(pool, now, exclude, overlook, cap, key) {
      if (key === undefined || key === "") return fallback.select(pool, now, exclude, overlook, cap);
      let best: Target | undefined;
      let bestScore = -Infinity;
      for (const t of pool) {
        if (!usable(t, now, exclude, overlook, cap)) continue;
        // Weighted rendezvous: score = -weight / ln(u), u uniform in (0, 1) from hash(key, endpoint).
        const u = Math.min(Math.max(hash32(key, t.endpoint.urlHash), 1e-12), 1 - 1e-12);
        const score = -t.weight / Math.log(u);
        if (score > bestScore) {
          best = t;
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
    select(pool, now, exclude, overlook, cap) {
      const n = pool.length;
      let best: Target | undefined;
      for (let i = 0; i < n; i++) {
        const t = pool[(start + i) % n]!;
        if (usable(t, now, exclude, overlook, cap) && (best === undefined || t.endpoint.inflight < best.endpoint.inflight)) best = t;
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
