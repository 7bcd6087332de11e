/** Strict-Transport-Security (RFC 6797) as a response filter of the routes of an HTTPS site. */
import type { ResponseFilter } from "./context.ts";

/**
 * hstsFilter adds Strict-Transport-Security with `value` to what a route answers over TLS (RFC 6797 §7.1: never over plain HTTP), its errors included. One
 * header set per response.
 */
export function hstsFilter(value: string): ResponseFilter {
  return (ctx, res) => {
    if (ctx.scheme === "https") res.headers.set("strict-transport-security", value);
    return res;
  };
}
