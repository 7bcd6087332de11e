/** A route's pool: its endpoints and a selection policy; built per generation, never mutated. */
import type { LoadBalance } from "../config/types.ts";
import type { Endpoint } from "./endpoint.ts";
import { policyFor, type SelectionPolicy } from "./policies.ts";

/** Pool selects endpoints for one route; a reload builds a new Pool over the surviving Endpoint objects. */
export class Pool {
  private readonly policy: SelectionPolicy;

  constructor(readonly endpoints: readonly Endpoint[], loadBalance: LoadBalance) {
    this.policy = policyFor(loadBalance);
  }

  /** select returns an available endpoint not yet tried, or undefined. */
  select(now: number, tried?: readonly Endpoint[]): Endpoint | undefined {
    return this.policy.select(this.endpoints, now, tried);
  }
}
