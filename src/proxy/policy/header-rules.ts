/** Header rules ([headers]): the request's fields edited before it is forwarded, the response's before it goes to the client; values with placeholders. */
import type { FieldRule, HeaderRules } from "../../config/policy-types.ts";
import type { FieldEditor } from "../../lib/fields.ts";
import type { RequestContext, RequestFilter, ResponseFilter } from "../context.ts";
import { trustedClient } from "./client-address.ts";

/** Value is a rule's value: a constant, or parts where odd indexes are placeholder names. */
type Value = string | readonly string[];

function compile(value: string): Value {
  if (!value.includes("{")) return value;
  // "a {client} b" splits into ["a ", "client", " b"]: placeholders at the odd indexes.
  return value.split(/\{(client|request_id|host|scheme|user)\}/);
}

function placeholder(ctx: RequestContext, name: string): string {
  switch (name) {
    case "client":
      return trustedClient(ctx);
    case "request_id":
      return ctx.id;
    case "host":
      return ctx.host;
    case "scheme":
      return ctx.scheme;
    default:
      return ctx.user ?? "";
  }
}

function expand(ctx: RequestContext, v: Value): string {
  if (typeof v === "string") return v;
  let out = "";
  for (let i = 0; i < v.length; i++) out += i % 2 === 0 ? v[i] : placeholder(ctx, v[i]!);
  return out;
}

type Compiled = { readonly set: readonly [string, Value][]; readonly add: readonly [string, Value][]; readonly remove: readonly string[] };

function compileRules(set: readonly FieldRule[], add: readonly FieldRule[], remove: readonly string[]): Compiled {
  return { set: set.map((r) => [r.name, compile(r.value)]), add: add.map((r) => [r.name, compile(r.value)]), remove };
}

/** apply runs one side's rules on fields: removals, then sets (each replacing every field of its name), then additions. */
function apply(ctx: RequestContext, h: FieldEditor, c: Compiled): void {
  for (const name of c.remove) h.delete(name);
  for (const [name, v] of c.set) h.set(name, expand(ctx, v));
  for (const [name, v] of c.add) h.append(name, expand(ctx, v));
}

/**
 * requestRulesFilter edits the request's fields as the route's last request filter, after auth (so a rule can drop what forward auth copied) and before the
 * gateway's own fields: Via, X-Forwarded-*, Forwarded and X-Request-ID are written when forwarding and cannot be replaced by a rule.
 */
export function requestRulesFilter(rules: HeaderRules): RequestFilter | undefined {
  const c = compileRules(rules.requestSet, rules.requestAdd, rules.requestRemove);
  if (c.set.length + c.add.length + c.remove.length === 0) return undefined;
  return (ctx) => {
    apply(ctx, ctx.headers, c);
    return undefined;
  };
}

/** responseRulesFilter edits what the route answers (the upstream's response, a cache hit, the gateway's own errors) on its way to the client. */
export function responseRulesFilter(rules: HeaderRules): ResponseFilter | undefined {
  const c = compileRules(rules.responseSet, rules.responseAdd, rules.responseRemove);
  if (c.set.length + c.add.length + c.remove.length === 0) return undefined;
  return (ctx, res) => {
    apply(ctx, res.headers, c);
    return res;
  };
}
