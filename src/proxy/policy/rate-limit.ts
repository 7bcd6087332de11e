/** Rate limits ([[rate_limit]]) as a request filter: every limit of the route must have a token for the request, else 429 with Retry-After and RateLimit fields. */
import type { Cell } from "../../observability/metrics.ts";
import type { RateKey, RateLimit } from "../../config/policy-types.ts";
import { failWith, GatewayError } from "../errors.ts";
import type { RequestContext, RequestFilter } from "../context.ts";
import { cookieValue } from "../hash-key.ts";
import { trustedClient } from "./client-address.ts";
import type { Buckets } from "./token-buckets.ts";

/** LONG_KEY: a field or cookie value longer than this is kept as its 64-bit hash, so max_keys bounds bytes as well as keys. */
const LONG_KEY = 64;

function valueKey(v: string): string {
  return v.length > LONG_KEY ? `#${Bun.hash(v).toString(36)}` : `=${v}`;
}

/** keyOf is the request's bucket key for a limit: undefined for the route's one bucket; a missing field or cookie falls back to the client's address. */
function keyOf(ctx: RequestContext, key: RateKey): string | undefined {
  switch (key.kind) {
    case "route":
      return undefined;
    case "client":
      return trustedClient(ctx);
    case "header": {
      // Values and addresses are told apart, so that a field naming someone's address cannot spend that client's tokens.
      const v = ctx.headers.get(key.name);
      return v === null ? `@${trustedClient(ctx)}` : valueKey(v);
    }
    case "cookie": {
      const v = cookieValue(ctx, key.name);
      return v === undefined ? `@${trustedClient(ctx)}` : valueKey(v);
    }
  }
}

/** policyField is the RateLimit-Policy field of the route's limits (draft-ietf-httpapi-ratelimit-headers): each named by its key, with its quota and window. */
function policyField(limits: readonly RateLimit[]): string {
  return limits.map((l) => `${JSON.stringify(l.text)};q=${Math.round(l.perSecond * l.window)};w=${l.window}`).join(", ");
}

/**
 * rateLimitFilter takes one token from every limit's bucket for the request, or none at all when one of them is empty (so a refusal by the site-wide limit
 * costs the client's own bucket nothing). The buckets are the caller's, so that they can outlive a reload.
 */
export function rateLimitFilter(sets: readonly Buckets[], limited: Cell): RequestFilter {
  const policy = policyField(sets.map((s) => s.limit));
  const buckets = new Array<ReturnType<Buckets["bucket"]>>(sets.length);
  return (ctx) => {
    const now = performance.now();
    let short = -1;
    for (let i = 0; i < sets.length; i++) {
      const b = sets[i]!.bucket(keyOf(ctx, sets[i]!.limit.key), now);
      buckets[i] = b;
      if (b.tokens < 1 && short < 0) short = i;
    }
    if (short < 0) {
      for (let i = 0; i < sets.length; i++) buckets[i]!.tokens -= 1;
      return undefined;
    }
    limited.value++;
    const set = sets[short]!;
    const wait = set.waitSeconds(buckets[short]!);
    return failWith(ctx, new GatewayError(429, "too many requests", "downstream", `rate limit ${set.limit.text} ${set.limit.rate} exceeded`), {
      "retry-after": String(wait),
      "ratelimit-policy": policy,
      ratelimit: `${JSON.stringify(set.limit.text)};r=0;t=${wait}`,
    });
  };
}
