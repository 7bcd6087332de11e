/** Selection policies: which endpoint of a pool gets the next request. */
import type { LoadBalance } from "../config/types.ts";
import type { Endpoint } from "./endpoint.ts";

/** SelectionPolicy picks one endpoint that is available at `now` and not in `exclude` (those already tried); undefined when none is. With `anyHealth`, the active health verdict is ignored (the all-unhealthy fallback). It allocates nothing. */
export interface SelectionPolicy {
  select(pool: readonly Endpoint[], now: number, exclude?: readonly Endpoint[], anyHealth?: boolean, cap?: number): Endpoint | undefined;
}

function usable(e: Endpoint, now: number, exclude: readonly Endpoint[] | undefined, anyHealth: boolean | undefined, cap: number | undefined): boolean {
  return (anyHealth ? e.cooled(now) : e.available(now)) && (cap === undefined || e.inflight < cap) && (exclude === undefined || !exclude.includes(e));
}

/** roundRobin cycles through the pool, skipping unavailable endpoints. */
export function roundRobin(): SelectionPolicy {
  let next = 0;
  return {
    select(pool, now, exclude, anyHealth, cap) {
      const n = pool.length;
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
  return name === "least_requests" ? leastRequests() : roundRobin();
}
