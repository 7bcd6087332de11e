/** The client address that policy trusts: the peer (or the client a PROXY preamble named), or behind trusted proxies the address their X-Forwarded-For names. */
import { isIP } from "node:net";
import { clientOf, type RequestContext } from "../context.ts";

/**
 * trustedClient is the address rate limits and IP rules judge, read once per request. A peer in [proxy] trusted_proxies vouches for the X-Forwarded-For
 * entries it appended: walking from the right, each trusted address passes the judgement to the one before it, and the first untrusted one is the client
 * (nginx's real_ip_recursive). An entry that is not an address stops the walk: the last good one stands, so a forged field cannot pick an address.
 */
export function trustedClient(ctx: RequestContext): string {
  if (ctx.client !== undefined) return ctx.client;
  let client = clientOf(ctx);
  const trusted = ctx.hop.trusted;
  if (trusted(client)) {
    const xff = ctx.headers.get("x-forwarded-for");
    if (xff !== null) {
      let end = xff.length;
      while (end > 0) {
        const comma = xff.lastIndexOf(",", end - 1);
        const entry = xff.slice(comma + 1, end).trim();
        if (isIP(entry) === 0) break;
        client = entry;
        if (!trusted(entry)) break;
        end = Math.max(comma, 0);
      }
    }
  }
  ctx.client = client;
  return client;
}
