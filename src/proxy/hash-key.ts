/** The key of consistent hashing (load_balance = "hash"): the client's address, a request header or a cookie. */
import type { HashOn } from "../config/types.ts";
import { clientOf, type RequestContext } from "./context.ts";

/** hashKey reads the request's key for hashOn, or undefined when the request has none (it is then balanced round-robin). */
export function hashKey(ctx: RequestContext, on: HashOn): string | undefined {
  if (on.kind === "client") return clientOf(ctx);
  if (on.kind === "header") return ctx.headers.get(on.name) ?? undefined;
  return cookieValue(ctx, on.name);
}

/** cookieValue is the value of the request's cookie `name` (RFC 6265 §5.4), undefined when it has none. */
export function cookieValue(ctx: RequestContext, name: string): string | undefined {
  const cookie = ctx.headers.get("cookie");
  if (cookie === null) return undefined;
  for (const part of cookie.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
