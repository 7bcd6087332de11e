/** A route's pool: its targets and a selection policy; built per generation, its target list swapped whole when DNS discovery changes it. */
import type { LoadBalance } from "../config/types.ts";
import type { Endpoint } from "./endpoint.ts";
import type { Target } from "./target.ts";
import { policyFor, type SelectionPolicy } from "./policies.ts";

/** RETRY_RATIO is the share of requests that may be retried; RETRY_BURST the tokens saved up for a burst. */
const RETRY_RATIO = 0.2;
const RETRY_BURST = 10;

/** Pool selects targets for one route; a reload builds a new Pool with new Targets over the surviving Endpoint objects. */
export class Pool {
  private readonly policy: SelectionPolicy;
  /** budget: retries may be at most RETRY_RATIO of requests (a token per request, capped), so retries cannot multiply an outage. */
  private budget = RETRY_BURST;

  constructor(
    private list: readonly Target[],
    loadBalance: LoadBalance,
    private readonly allUnhealthy: "try" | "fail" = "try",
    private readonly maxInflight?: number,
    private readonly slowStart = 0,
  ) {
    this.policy = policyFor(loadBalance);
  }

  /** targets are the pool's targets now. */
  get targets(): readonly Target[] {
    return this.list;
  }

  /** setTargets replaces the targets in one assignment (DNS discovery found others); selection in progress keeps the list it started with. */
  setTargets(list: readonly Target[]): void {
    this.list = list;
  }

  /** hasRetryBudget says whether a retry token is left, without spending it. */
  hasRetryBudget(): boolean {
    return this.budget >= 1;
  }

  /** allowRetry spends one retry token, if the budget has one. */
  allowRetry(): boolean {
    if (this.budget < 1) return false;
    this.budget -= 1;
    return true;
  }

  /**
   * select returns a target whose endpoint is available and not yet tried, or undefined. Passive ejection never leaves the pool without an endpoint to try:
   * when none is available only because of it, the ejected ones are tried (nginx never marks a sole server down; Envoy has its panic threshold). When active
   * checks find every endpoint unhealthy and the route says "try", the cooled-down ones are tried anyway (a health check that is wrong must not take a whole
   * site down), and the ejected ones when none has cooled down.
   */
  select(now: number, tried?: readonly Endpoint[], key?: string): Target | undefined {
    if (tried === undefined || tried.length === 0) this.budget = Math.min(RETRY_BURST, this.budget + RETRY_RATIO);
    let e = this.policy.select(this.list, now, tried, undefined, this.maxInflight, key);
    if (e !== undefined && this.slowStart > 0 && key === undefined) {
      // Slow start: an endpoint that just came (back) gets a share growing linearly over slowStart ms; the pick passes to another one otherwise.
      const age = now - e.endpoint.upSince;
      if (age < this.slowStart && Math.random() * this.slowStart > age)
        e = this.policy.select(this.list, now, [...(tried ?? []), e.endpoint], undefined, this.maxInflight) ?? e;
    }
    if (e !== undefined) return e;
    const list = this.list;
    if (list.some((x) => x.endpoint.healthy)) {
      if (list.some((x) => x.endpoint.available(now))) return undefined;
      return this.policy.select(list, now, tried, "ejection", this.maxInflight, key);
    }
    if (this.allUnhealthy === "fail") return undefined;
    if (list.some((x) => x.endpoint.cooled(now))) return this.policy.select(list, now, tried, "health", this.maxInflight, key);
    return this.policy.select(list, now, tried, "both", this.maxInflight, key);
  }

  /** saturated says whether every endpoint that could take a request is at its in-flight cap (circuit breaking: answer 503 at once). */
  saturated(now: number): boolean {
    const cap = this.maxInflight;
    return (
      cap !== undefined &&
      this.list.some((t) => t.endpoint.available(now)) &&
      this.list.every(({ endpoint: e }) => !e.available(now) || e.inflight - e.websockets >= cap)
    );
  }
}
