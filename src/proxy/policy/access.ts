/** IP allow and deny lists ([access]) as a request filter: deny wins; with an allow list, every other client gets 403. */
import type { Cell } from "../../observability/metrics.ts";
import type { AccessRule } from "../../config/policy-types.ts";
import { cidrMatcher } from "../../lib/cidr.ts";
import type { RequestFilter } from "../context.ts";
import { failWith, GatewayError } from "../errors.ts";
import { trustedClient } from "./client-address.ts";

/** MEMO bounds the addresses whose verdict is remembered; past it the memo starts again. */
const MEMO = 10_000;

/** accessAllows builds the predicate of an allow/deny rule over client addresses: the verdict memoised per address, one Map hit once seen. */
export function accessAllows(rule: AccessRule): (ip: string) => boolean {
  const deny = cidrMatcher(rule.deny);
  const allow = rule.allow.length === 0 ? undefined : cidrMatcher(rule.allow);
  const memo = new Map<string, boolean>();
  return (ip) => {
    let ok = memo.get(ip);
    if (ok === undefined) {
      ok = (allow === undefined || allow(ip)) && !deny(ip);
      if (memo.size >= MEMO) memo.clear();
      memo.set(ip, ok);
    }
    return ok;
  };
}

/** accessFilter answers 403 to a client (the trusted address, trustedClient) the rule does not let in; `denied` counts them. */
export function accessFilter(rule: AccessRule, denied: Cell): RequestFilter {
  const allows = accessAllows(rule);
  return (ctx) => {
    if (allows(trustedClient(ctx))) return undefined;
    denied.value++;
    return failWith(ctx, new GatewayError(403, "access denied", "downstream", "access: client address not allowed"));
  };
}
